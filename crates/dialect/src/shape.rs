//! Response shaping: rows straight to JSON or CSV bytes, and the `Content-Range` rules.
//!
//! Rows are written without an intermediate value tree: keys are escaped once per plan,
//! integers go through `itoa`, reals through `zmij` (shortest round-trip digits; an exponent
//! as PostgreSQL writes it, `1e+20`), text is escaped in place. Declared
//! `BOOL` columns render as `true`/`false`, declared `JSON` columns nest as JSON, BLOBs become
//! `"\x…"` (PostgreSQL's bytea text). CSV follows PostgreSQL's row-literal quoting.
//!
//! The output buffer is handed to a [`Spill`] after every value, so a caller can bound it:
//! send what is there as a chunk of a streamed response, or refuse to go on. A row is never
//! held whole unless its values are small.

use rusqlite::Row;
use rusqlite::types::{Value, ValueRef};

use crate::error::ApiError;
use crate::headers::MediaType;
use crate::read::plan::{OutputField, OutputKind, distinct_exprs};

/// What the shaper calls after writing each value: may take the bytes written so far (a chunk
/// of a streamed body) or stop the read with an error.
pub(crate) trait Spill {
    fn spill(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError>;
}

/// A row to shape: a statement's current row, or values read earlier.
pub(crate) trait RowSource {
    fn value(&self, i: usize) -> rusqlite::Result<ValueRef<'_>>;
}

impl RowSource for Row<'_> {
    fn value(&self, i: usize) -> rusqlite::Result<ValueRef<'_>> {
        self.get_ref(i)
    }
}

impl RowSource for [Value] {
    fn value(&self, i: usize) -> rusqlite::Result<ValueRef<'_>> {
        Ok(self.get(i).map_or(ValueRef::Null, ValueRef::from))
    }
}

/// Writes rows of one read node in the negotiated media type.
pub(crate) struct Shaper {
    media: MediaType,
    fields: Vec<ShapedField>,
    /// `"key":` for each field, escaped once, one after the other.
    json_keys: Vec<u8>,
    csv_header: Vec<u8>,
}

/// How one output field is written.
struct ShapedField {
    kind: OutputKind,
    /// The column of the row that holds its value (see
    /// [`crate::read::plan::distinct_exprs`]).
    column: usize,
    /// Where its `"key":` ends in [`Shaper::json_keys`] (it begins where the previous one
    /// ends).
    key_end: usize,
}

impl Shaper {
    pub(crate) fn new(fields: &[OutputField], media: MediaType) -> Self {
        let mut json_keys =
            Vec::with_capacity(fields.iter().map(|f| f.key.len() + 3).sum::<usize>());
        let columns = distinct_exprs(fields).1;
        let mut shaped = Vec::with_capacity(fields.len());
        let mut csv_header = Vec::new();
        for (i, (f, column)) in fields.iter().zip(columns).enumerate() {
            write_json_str(&mut json_keys, f.key.as_bytes());
            json_keys.push(b':');
            shaped.push(ShapedField {
                kind: f.kind,
                column,
                key_end: json_keys.len(),
            });
            if media == MediaType::Csv {
                if i > 0 {
                    csv_header.push(b',');
                }
                write_csv_cell(&mut csv_header, f.key.as_bytes());
            }
        }
        Shaper {
            media,
            fields: shaped,
            json_keys,
            csv_header,
        }
    }

    pub(crate) fn begin(&self, out: &mut Vec<u8>) {
        if let MediaType::Json { .. } = self.media {
            out.push(b'[');
        }
    }

    /// Writes row number `index` (0-based), offering `out` to `spill` after every value.
    pub(crate) fn row<R: RowSource + ?Sized, S: Spill>(
        &self,
        out: &mut Vec<u8>,
        row: &R,
        index: usize,
        spill: &mut S,
    ) -> Result<(), ApiError> {
        match self.media {
            MediaType::Json { strip_nulls } => {
                if index > 0 {
                    out.push(b',');
                }
                self.object(out, row, strip_nulls, spill)
            }
            MediaType::Singular { strip_nulls } => {
                if index == 0 {
                    self.object(out, row, strip_nulls, spill)?;
                }
                Ok(())
            }
            MediaType::Csv => {
                if index == 0 {
                    out.extend_from_slice(&self.csv_header);
                }
                out.push(b'\n');
                for (i, f) in self.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_csv_value(out, row.value(f.column)?, f.kind);
                    spill.spill(out)?;
                }
                Ok(())
            }
        }
    }

    pub(crate) fn finish(&self, out: &mut Vec<u8>, rows: usize) {
        match self.media {
            MediaType::Json { .. } => out.push(b']'),
            MediaType::Csv if rows == 0 => out.push(b'\n'),
            _ => {}
        }
    }

    fn object<R: RowSource + ?Sized, S: Spill>(
        &self,
        out: &mut Vec<u8>,
        row: &R,
        strip_nulls: bool,
        spill: &mut S,
    ) -> Result<(), ApiError> {
        out.push(b'{');
        let mut first = true;
        let mut key_start = 0;
        for f in &self.fields {
            let key = &self.json_keys[key_start..f.key_end];
            key_start = f.key_end;
            let v = row.value(f.column)?;
            if strip_nulls && v == ValueRef::Null {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
            write_json_value(out, v, f.kind);
            spill.spill(out)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// One SQLite value as JSON.
pub(crate) fn write_json_value(out: &mut Vec<u8>, v: ValueRef<'_>, kind: OutputKind) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) if kind == OutputKind::Bool => {
            out.extend_from_slice(if i != 0 { b"true" } else { b"false" })
        }
        ValueRef::Integer(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        ValueRef::Real(f) if kind == OutputKind::Bool => {
            out.extend_from_slice(if f != 0.0 { b"true" } else { b"false" })
        }
        ValueRef::Real(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes())
        }
        ValueRef::Real(_) => out.extend_from_slice(b"null"),
        // Built by SQLite's JSON functions: JSON already.
        ValueRef::Text(t) if kind == OutputKind::RawJson => out.extend_from_slice(t),
        ValueRef::Text(t) => {
            if kind == OutputKind::Json
                && serde_json::from_slice::<serde::de::IgnoredAny>(t).is_ok()
            {
                out.extend_from_slice(t);
            } else {
                write_json_str(out, t);
            }
        }
        ValueRef::Blob(b) => {
            out.extend_from_slice(b"\"\\\\x");
            push_hex(out, b);
            out.push(b'"');
        }
    }
}

fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in b {
        out.push(HEX[(byte >> 4) as usize]);
        out.push(HEX[(byte & 15) as usize]);
    }
}

/// Writes `s` (UTF-8; invalid sequences are replaced) as a JSON string.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    // The common case: ASCII text with nothing to escape is copied whole. The check has no
    // early exit, so the compiler can test many bytes at once.
    let plain = !s.iter().fold(false, |bad, &b| {
        bad | !(0x20..0x80).contains(&b) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let owned;
    let s = match std::str::from_utf8(s) {
        Ok(_) => s,
        Err(_) => {
            owned = String::from_utf8_lossy(s).into_owned();
            owned.as_bytes()
        }
    };
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            push_hex(out, &[b]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// One value in PostgreSQL's text form, quoted as a CSV cell.
fn write_csv_value(out: &mut Vec<u8>, v: ValueRef<'_>, kind: OutputKind) {
    match v {
        ValueRef::Null => {}
        ValueRef::Integer(i) if kind == OutputKind::Bool => {
            out.push(if i != 0 { b't' } else { b'f' })
        }
        ValueRef::Integer(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        ValueRef::Real(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes())
        }
        ValueRef::Real(f) => write_csv_cell(out, f.to_string().as_bytes()),
        ValueRef::Text(t) => write_csv_cell(out, t),
        ValueRef::Blob(b) => {
            out.extend_from_slice(b"\\x");
            push_hex(out, b);
        }
    }
}

/// Quotes a cell when it is empty or holds `" \ ( ) ,` or whitespace; doubles `"` and `\`.
fn write_csv_cell(out: &mut Vec<u8>, s: &[u8]) {
    let needs = s.is_empty()
        || s.iter()
            .any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b',') || b.is_ascii_whitespace());
    if !needs {
        out.extend_from_slice(s);
        return;
    }
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b);
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `Content-Range` and status for a page of `rows` rows at `offset`, given the total if known.
/// Returns `None` for the status when the offset lies beyond a known total (416).
pub(crate) fn content_range(offset: i64, rows: usize, total: Option<i64>) -> (Option<u16>, String) {
    let mut num = itoa::Buffer::new();
    let mut range = String::with_capacity(24);
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    if rows == 0 {
        range.push('*');
    } else {
        range.push_str(num.format(offset));
        range.push('-');
        range.push_str(num.format(offset.saturating_add(rows - 1)));
    }
    range.push('/');
    match total {
        Some(t) => range.push_str(num.format(t)),
        None => range.push('*'),
    }
    let status = match total {
        None => Some(200),
        Some(t) if offset > t => None,
        Some(t) if rows < t => Some(206),
        Some(_) => Some(200),
    };
    (status, range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escaping() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn json_strings_plain_and_invalid() {
        let mut out = Vec::new();
        write_json_str(&mut out, b"Book number 12345");
        out.push(b'|');
        write_json_str(&mut out, b"");
        out.push(b'|');
        // Invalid UTF-8 is replaced; a DEL (0x7f) needs no escape.
        write_json_str(&mut out, b"a\xffb\x7f");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"Book number 12345\"|\"\"|\"a\u{fffd}b\u{7f}\""
        );
    }

    #[test]
    fn reals_as_postgresql_writes_them() {
        let json = |f: f64| {
            let mut out = Vec::new();
            write_json_value(&mut out, ValueRef::Real(f), OutputKind::Plain);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(json(1500.5), "1500.5");
        assert_eq!(json(0.1), "0.1");
        assert_eq!(json(-2.0), "-2.0");
        assert_eq!(json(1e20), "1e+20");
        assert_eq!(json(1.5e-7), "1.5e-7");
        assert_eq!(json(f64::NAN), "null");
    }

    #[test]
    fn csv_cells() {
        let mut out = Vec::new();
        write_csv_cell(&mut out, b"Hebdon, John");
        out.push(b'|');
        write_csv_cell(&mut out, b"Double\"Quote");
        out.push(b'|');
        write_csv_cell(&mut out, b"");
        out.push(b'|');
        write_csv_cell(&mut out, b"plain");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"Hebdon, John\"|\"Double\"\"Quote\"|\"\"|plain"
        );
    }

    #[test]
    fn content_range_rules() {
        assert_eq!(content_range(0, 5, None), (Some(200), "0-4/*".to_string()));
        assert_eq!(content_range(0, 0, None), (Some(200), "*/*".to_string()));
        assert_eq!(
            content_range(0, 3, Some(15)),
            (Some(206), "0-2/15".to_string())
        );
        assert_eq!(
            content_range(0, 15, Some(15)),
            (Some(200), "0-14/15".to_string())
        );
        assert_eq!(content_range(100, 0, Some(15)).0, None);
        assert_eq!(content_range(0, 0, Some(0)), (Some(200), "*/0".to_string()));
    }
}
