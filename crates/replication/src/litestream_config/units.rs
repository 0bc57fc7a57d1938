//! Go-compatible value syntaxes used in Litestream configs: durations (`time.ParseDuration`,
//! e.g. `1h30m`, `1.5s`, `500ms`; a bare integer is nanoseconds, as Go's YAML decoder does)
//! and byte sizes (go-humanize `ParseBytes`: `5MB` = 5·1000², `5MiB` = 5·1024², `1.5GB`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A signed duration in nanoseconds, exactly as Go's `time.Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// Parses Go's duration syntax: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+` or `0`.
    pub fn parse(s: &str) -> Result<GoDuration, String> {
        let err = || format!("invalid duration {s:?} (expected e.g. 10s, 1m30s, 500ms, 24h)");
        let (neg, mut rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if rest == "0" {
            return Ok(GoDuration(0));
        }
        if rest.is_empty() {
            return Err(err());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int_part = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_part = "";
            if let Some(r) = rest.strip_prefix('.') {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                frac_part = &r[..n];
                rest = &r[n..];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err());
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(rest.len(), |(i, _)| i);
            let unit: u128 = match &rest[..unit_len] {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err())?
            };
            let mut value = int.checked_mul(unit).ok_or_else(err)?;
            if !frac_part.is_empty() {
                // Digits beyond nanosecond precision do not matter.
                let digits = &frac_part[..frac_part.len().min(20)];
                let frac: u128 = digits.parse().map_err(|_| err())?;
                let scale = 10u128.pow(u32::try_from(digits.len()).map_err(|_| err())?);
                value += frac * unit / scale;
            }
            total = total.checked_add(value).ok_or_else(err)?;
        }
        let max = if neg {
            i64::MAX as u128 + 1
        } else {
            i64::MAX as u128
        };
        if total > max {
            return Err(err());
        }
        let v = i128::try_from(total).map_err(|_| err())?;
        let v = if neg { -v } else { v };
        i64::try_from(v).map(GoDuration).map_err(|_| err())
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// The duration if it is not negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = std::time::Duration::from_nanos(self.0.unsigned_abs());
        if self.0 < 0 {
            write!(f, "-{d:?}")
        } else {
            write!(f, "{d:?}")
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 10s, 5m or 24h")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GoDuration, E> {
                GoDuration::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<GoDuration, E> {
                i64::try_from(n)
                    .map(GoDuration)
                    .map_err(|_| E::custom("duration out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count written as a size string (`5MB`, `5MiB`, `1.5GB`, `1048576`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let err = || format!("invalid size {s:?} (expected e.g. 5MB, 5MiB, 1048576)");
        let t = s.trim();
        if t.is_empty() {
            return Err("empty size string".to_string());
        }
        let split = t
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
            .map_or(t.len(), |(i, _)| i);
        let number: String = t[..split].chars().filter(|&c| c != ',').collect();
        let unit = t[split..].trim().to_ascii_lowercase();
        let mult: f64 = match unit.as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "p" | "pb" => 1e15,
            "e" | "eb" => 1e18,
            "ki" | "kib" => 1024.0,
            "mi" | "mib" => 1024f64.powi(2),
            "gi" | "gib" => 1024f64.powi(3),
            "ti" | "tib" => 1024f64.powi(4),
            "pi" | "pib" => 1024f64.powi(5),
            "ei" | "eib" => 1024f64.powi(6),
            _ => return Err(err()),
        };
        let n: f64 = number.parse().map_err(|_| err())?;
        let bytes = n * mult;
        if !bytes.is_finite() || !(0.0..9.223_372_036_854_776e18).contains(&bytes) {
            return Err(format!("size {s:?} is out of range"));
        }
        // Truncation toward zero, as go-humanize does.
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 5MB or 5MiB")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size must not be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML boolean as Go's YAML decoder (YAML 1.1) reads it: besides `true`/`false` it
/// accepts `yes`/`no`, `on`/`off`, `y`/`n` in lower, title or upper case.
pub(crate) fn go_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean (true/false, yes/no, on/off)")
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Option<bool>, E> {
            Ok(Some(b))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<bool>, E> {
            match s {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                | "TRUE" => Ok(Some(true)),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                | "FALSE" => Ok(Some(false)),
                _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<bool>, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("10s", 10_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("500ms", 500_000_000),
            ("-1s", -1_000_000_000),
            ("+2us", 2_000),
            ("3µs", 3_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
        ];
        for (s, n) in ok {
            assert_eq!(GoDuration::parse(s), Ok(GoDuration(n)), "{s}");
        }
        for bad in [
            "",
            "10",
            "1d",
            "s",
            "1.5",
            "--1s",
            "1 s",
            "9999999999h",
            ".",
        ] {
            assert!(GoDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        let ok = [
            ("5MB", 5_000_000),
            ("5MiB", 5_242_880),
            ("5 mib", 5_242_880),
            ("1.5GB", 1_500_000_000),
            ("100B", 100),
            ("1024", 1024),
            ("1,024KB", 1_024_000),
            ("1k", 1000),
        ];
        for (s, n) in ok {
            assert_eq!(ByteSize::parse(s), Ok(ByteSize(n)), "{s}");
        }
        for bad in ["", "MB", "5XB", "-5MB", "1e3"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }
}
