//! Request bodies of writes: JSON, CSV and form-urlencoded payloads, checked and turned into
//! the one JSON parameter a write statement binds.
//!
//! Whatever the format, a payload becomes a JSON array of objects (text) plus the keys of its
//! objects. JSON is validated in one streaming pass without building a value tree (keys are
//! collected per object, values skipped) and bound as it came — an object is wrapped as
//! `[…]`, an array is used as is — so a large bulk insert is never re-serialized. As in
//! PostgREST: every object of an array must have the same keys unless `columns` is given
//! (PGRST102 `All object keys must match`); a body that is not JSON, or is empty, is PGRST102
//! `Empty or invalid json`; a scalar body counts as an empty array; CSV takes its header line
//! as keys, `NULL` as null and every other cell as text; a form body gives one object of
//! strings.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::ApiError;

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Csv,
    Form,
}

impl BodyFormat {
    /// The format named by `Content-Type` (absent means JSON); anything else is PGRST102.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, ApiError> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(BodyFormat::Json);
        };
        let mime = value.split(';').next().unwrap_or("").trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/json" => Ok(BodyFormat::Json),
            "text/csv" => Ok(BodyFormat::Csv),
            "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
            _ => Err(ApiError::new(
                400,
                "PGRST102",
                format!("Content-Type not acceptable: {mime}"),
            )),
        }
    }
}

/// A checked request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The rows as one JSON array of objects (text): the statement's body parameter.
    pub json: String,
    /// The keys of the first object, in order. Without `columns`, every object has exactly
    /// these keys; with `columns`, the objects may differ and `columns` decides.
    pub keys: Vec<String>,
    /// How many objects the array holds.
    pub rows: usize,
}

impl Payload {
    /// An empty array.
    pub fn empty() -> Self {
        Payload {
            json: "[]".to_string(),
            keys: Vec::new(),
            rows: 0,
        }
    }
}

fn invalid_json(details: impl fmt::Display) -> ApiError {
    ApiError::new(400, "PGRST102", "Empty or invalid json").with_details(details.to_string())
}

fn keys_must_match() -> ApiError {
    ApiError::new(400, "PGRST102", "All object keys must match")
}

/// Parses `body` in `format`. `columns_given` relaxes the same-keys rule (the `columns`
/// parameter chooses the columns instead).
pub fn parse_payload(
    body: &[u8],
    format: BodyFormat,
    columns_given: bool,
) -> Result<Payload, ApiError> {
    match format {
        BodyFormat::Json => parse_json(body, columns_given),
        BodyFormat::Csv => parse_csv(body),
        BodyFormat::Form => Ok(parse_form(body)),
    }
}

/// What one pass over a JSON body found.
#[derive(Default)]
struct Scan {
    first_keys: Option<Vec<String>>,
    rows: usize,
    uniform: bool,
    non_object: bool,
}

impl Scan {
    fn object(&mut self, keys: Vec<String>) {
        self.rows += 1;
        match &self.first_keys {
            None => self.first_keys = Some(keys),
            Some(first) => {
                if !same_keys(first, &keys) {
                    self.uniform = false;
                }
            }
        }
    }
}

fn same_keys(a: &[String], b: &[String]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The top level: an object, an array of (hopefully) objects, or a scalar.
enum Top {
    Object,
    Array,
    Scalar,
}

struct TopVisitor<'a>(&'a mut Scan);

macro_rules! scalar_visits {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<Self::Value, E> { Ok(Self::scalar()) })*
    };
}

impl TopVisitor<'_> {
    fn scalar() -> Top {
        Top::Scalar
    }
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top, A::Error> {
        let keys = collect_keys(map)?;
        self.0.object(keys);
        Ok(Top::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element_seed(ElementSeed(self.0))?.is_some() {}
        Ok(Top::Array)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Scalar)
    }
    scalar_visits!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

fn collect_keys<'de, A: MapAccess<'de>>(mut map: A) -> Result<Vec<String>, A::Error> {
    let mut keys = Vec::new();
    while let Some(k) = map.next_key::<String>()? {
        map.next_value::<IgnoredAny>()?;
        keys.push(k);
    }
    Ok(keys)
}

/// One element of a top-level array: an object's keys are collected, anything else noted.
struct ElementSeed<'a>(&'a mut Scan);

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ElementSeed<'_> {
    fn other(self) {
        self.0.rows += 1;
        self.0.non_object = true;
    }
}

macro_rules! element_scalars {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<(), E> { self.other(); Ok(()) })*
    };
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let keys = collect_keys(map)?;
        self.0.object(keys);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.other();
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.other();
        Ok(())
    }
    element_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

fn parse_json(body: &[u8], columns_given: bool) -> Result<Payload, ApiError> {
    let mut scan = Scan {
        uniform: true,
        ..Scan::default()
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = de
        .deserialize_any(TopVisitor(&mut scan))
        .and_then(|top| de.end().map(|()| top))
        .map_err(invalid_json)?;
    // Valid JSON is valid UTF-8.
    let text = std::str::from_utf8(body).map_err(invalid_json)?;
    match top {
        Top::Scalar => Ok(Payload::empty()),
        Top::Object => Ok(Payload {
            json: format!("[{text}]"),
            keys: scan.first_keys.unwrap_or_default(),
            rows: 1,
        }),
        Top::Array => {
            if scan.non_object {
                return Err(if columns_given {
                    ApiError::new(
                        400,
                        "22023",
                        "argument of json_populate_recordset must be an array of objects",
                    )
                } else {
                    keys_must_match()
                });
            }
            if !scan.uniform && !columns_given {
                return Err(keys_must_match());
            }
            Ok(Payload {
                json: text.to_string(),
                keys: scan.first_keys.unwrap_or_default(),
                rows: scan.rows,
            })
        }
    }
}

fn parse_csv(body: &[u8]) -> Result<Payload, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let csv_error = |e: csv::Error| match e.kind() {
        csv::ErrorKind::UnequalLengths { .. } => {
            ApiError::new(400, "PGRST102", "All lines must have same number of fields")
        }
        _ => ApiError::new(400, "PGRST102", format!("Invalid CSV: {e}")),
    };
    let keys: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_string)
        .collect();
    if keys.is_empty() || keys.iter().all(String::is_empty) {
        return Err(ApiError::new(
            400,
            "PGRST102",
            "Invalid CSV: the header line is missing",
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let mut obj = serde_json::Map::with_capacity(keys.len());
        for (k, v) in keys.iter().zip(record.iter()) {
            let v = if v == "NULL" {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(v.to_string())
            };
            obj.insert(k.clone(), v);
        }
        rows.push(serde_json::Value::Object(obj));
    }
    let n = rows.len();
    Ok(Payload {
        json: serde_json::Value::Array(rows).to_string(),
        keys,
        rows: n,
    })
}

fn parse_form(body: &[u8]) -> Payload {
    let mut obj = serde_json::Map::new();
    let mut keys = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if !obj.contains_key(k.as_ref()) {
            keys.push(k.to_string());
        }
        obj.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
    }
    Payload {
        json: serde_json::Value::Array(vec![serde_json::Value::Object(obj)]).to_string(),
        keys,
        rows: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<Payload, ApiError> {
        parse_payload(s.as_bytes(), BodyFormat::Json, false)
    }

    #[test]
    fn objects_and_arrays() {
        let p = json(r#"{"a":1,"b":{"x":[1,2]}}"#).unwrap();
        assert_eq!(p.json, r#"[{"a":1,"b":{"x":[1,2]}}]"#);
        assert_eq!(p.keys, ["a", "b"]);
        assert_eq!(p.rows, 1);
        let p = json(r#" [{"a":1,"b":2},{"b":3,"a":4}] "#).unwrap();
        assert_eq!(p.rows, 2);
        assert_eq!(p.keys, ["a", "b"]);
        assert_eq!(
            json("[]").unwrap(),
            Payload {
                json: "[]".into(),
                ..Payload::empty()
            }
        );
        // PostgREST reads a scalar as an empty array.
        assert_eq!(json("5").unwrap().rows, 0);
        assert_eq!(json("null").unwrap().rows, 0);
    }

    #[test]
    fn bad_json_and_mismatched_keys() {
        for bad in ["", "   ", "}{ x = 2", "{\"a\":1", "[1,]", "{\"a\":1} x"] {
            let e = json(bad).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "PGRST102"), "{bad:?}");
            assert_eq!(e.message, "Empty or invalid json");
        }
        for bad in [
            r#"[{"a":1},{"b":1}]"#,
            r#"[{"a":1},{"a":1,"b":2}]"#,
            "[1,2]",
            r#"[{"a":1},5]"#,
        ] {
            let e = json(bad).unwrap_err();
            assert_eq!(e.message, "All object keys must match", "{bad:?}");
        }
        // With `columns`, objects may differ.
        let p = parse_payload(br#"[{"a":1},{"b":1}]"#, BodyFormat::Json, true).unwrap();
        assert_eq!((p.rows, p.keys.clone()), (2, vec!["a".to_string()]));
    }

    #[test]
    fn csv_bodies() {
        let p = parse_payload(b"a,b\n1,hi\n2,NULL\n3,\"x, y\"", BodyFormat::Csv, false).unwrap();
        assert_eq!(p.keys, ["a", "b"]);
        assert_eq!(p.rows, 3);
        let v: serde_json::Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"a":"1","b":"hi"},{"a":"2","b":null},{"a":"3","b":"x, y"}])
        );
        let e = parse_payload(b"a,b\n1\n", BodyFormat::Csv, false).unwrap_err();
        assert_eq!(e.message, "All lines must have same number of fields");
        assert_eq!(
            parse_payload(b"", BodyFormat::Csv, false).unwrap_err().code,
            "PGRST102"
        );
    }

    #[test]
    fn form_bodies() {
        let p = parse_payload(b"a=1&b=x+y&c=%C3%A9", BodyFormat::Form, false).unwrap();
        assert_eq!(p.keys, ["a", "b", "c"]);
        let v: serde_json::Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(v, serde_json::json!([{"a":"1","b":"x y","c":"é"}]));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyFormat::from_content_type(None).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("text/csv")).unwrap(),
            BodyFormat::Csv
        );
        let e = BodyFormat::from_content_type(Some("text/xml")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST102"));
        assert_eq!(e.message, "Content-Type not acceptable: text/xml");
    }
}
