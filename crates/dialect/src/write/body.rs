//! Request bodies of writes: JSON, CSV and form-urlencoded payloads, checked and turned into
//! the one JSON parameter a write statement binds.
//!
//! Whatever the format, a payload becomes a JSON array of rows (text) plus the keys of its
//! rows, and costs memory in proportion to the body (a small constant times its size). JSON
//! is validated in one streaming pass without building a value tree (keys are collected per
//! object, values skipped) and bound as it came — an object is wrapped as `[…]`, an array is
//! used as is — so a large bulk insert is never re-serialized. A CSV body becomes an array of
//! arrays, values by position in the header ([`Layout::Arrays`]): repeating the header's names
//! in every row would make the parameter grow with rows × header, so a long header over many
//! short rows would cost the square of the body. As in PostgREST: every object of an array
//! must have the same keys unless `columns` is given (PGRST102 `All object keys must match`);
//! a body that is not JSON, or is empty, is PGRST102 `Empty or invalid json`; a scalar body
//! counts as an empty array; CSV takes its header line as keys, `NULL` as null and every other
//! cell as text; a form body gives one object of strings. What is kept per key is bounded too:
//! no table has more than [`MAX_KEYS`] columns, so a row (an object, a CSV header, a form)
//! with more keys is refused as soon as they have been seen (PGRST102), and with `columns`
//! the keys of JSON objects are not collected at all.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{ApiError, ErrorCode};
use crate::shape::write_json_str;

/// The most keys a row of a body may have: SQLite's limit on the columns of a table (its
/// default `SQLITE_MAX_COLUMN`), so a row with more cannot be written anyway.
pub(crate) const MAX_KEYS: usize = 2000;

fn too_many_keys() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidBody,
        "A row has more keys than a table can have columns",
    )
    .with_details(format!("More than {MAX_KEYS} keys"))
}

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
                ErrorCode::InvalidBody,
                format!("Content-Type not acceptable: {mime}"),
            )),
        }
    }
}

/// How the rows of a payload hold their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each row is an object: values by key (JSON and form bodies).
    Objects,
    /// Each row is an array: values by position, in the order of [`Payload::keys`] (CSV).
    Arrays,
}

/// A checked request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The rows as one JSON array (text): the statement's body parameter.
    pub json: String,
    /// The keys of the first row, in order. Without `columns`, every row has exactly these
    /// keys; with `columns`, objects may differ, `columns` decides and the keys of JSON
    /// objects are not collected (empty).
    pub keys: Vec<String>,
    /// How many rows the array holds.
    pub rows: usize,
    pub layout: Layout,
}

impl Payload {
    /// An empty array.
    pub fn empty() -> Self {
        Payload {
            json: "[]".to_string(),
            keys: Vec::new(),
            rows: 0,
            layout: Layout::Objects,
        }
    }

    /// Where each column's value sits in a row of [`Payload::json`].
    pub fn paths(&self) -> ColumnPaths {
        match self.layout {
            Layout::Objects => ColumnPaths::ByKey,
            Layout::Arrays => ColumnPaths::by_position(&self.keys),
        }
    }
}

/// Where a column's value sits in one row of a body parameter: under its name (objects) or at
/// its position in the header (arrays; a repeated header name means its last position, as a
/// repeated object key does; a column the header lacks points past the end, which reads as
/// missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnPaths {
    ByKey,
    ByPosition {
        positions: HashMap<String, usize>,
        width: usize,
    },
}

impl ColumnPaths {
    pub fn by_position(keys: &[String]) -> Self {
        let positions = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        ColumnPaths::ByPosition {
            positions,
            width: keys.len(),
        }
    }

    /// The JSON path of `name`'s value in a row found at `row` (`$` for the row itself,
    /// `$[0]` for the first row of the array).
    pub fn path(&self, row: &str, name: &str) -> String {
        match self {
            ColumnPaths::ByKey => crate::write::sql::json_path(row, name),
            ColumnPaths::ByPosition { positions, width } => {
                let i = positions.get(name).copied().unwrap_or(*width);
                format!("{row}[{i}]")
            }
        }
    }
}

fn invalid_json(details: impl fmt::Display) -> ApiError {
    ApiError::new(400, ErrorCode::InvalidBody, "Empty or invalid json")
        .with_details(details.to_string())
}

fn keys_must_match() -> ApiError {
    ApiError::new(400, ErrorCode::InvalidBody, "All object keys must match")
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
        BodyFormat::Form => parse_form(body),
    }
}

/// What one pass over a JSON body found.
#[derive(Default)]
struct Scan {
    first_keys: Option<Vec<String>>,
    rows: usize,
    uniform: bool,
    non_object: bool,
    /// `columns` decides: the keys are not collected.
    skip_keys: bool,
    /// An object had more than [`MAX_KEYS`] keys (the scan stopped there).
    too_many: bool,
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

    /// Reads one object: its keys (at most [`MAX_KEYS`]) unless they are not wanted, its
    /// values skipped.
    fn visit_object<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        if self.skip_keys {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            self.rows += 1;
            return Ok(());
        }
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if keys.len() == MAX_KEYS {
                self.too_many = true;
                return Err(de::Error::custom("too many keys"));
            }
            map.next_value::<IgnoredAny>()?;
            keys.push(k);
        }
        self.object(keys);
        Ok(())
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
        self.0.visit_object(map)?;
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
        self.0.visit_object(map)
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
        skip_keys: columns_given,
        ..Scan::default()
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = de
        .deserialize_any(TopVisitor(&mut scan))
        .and_then(|top| de.end().map(|()| top));
    if scan.too_many {
        return Err(too_many_keys());
    }
    let top = top.map_err(invalid_json)?;
    // Valid JSON is valid UTF-8.
    let text = std::str::from_utf8(body).map_err(invalid_json)?;
    match top {
        Top::Scalar => Ok(Payload::empty()),
        Top::Object => Ok(Payload {
            json: format!("[{text}]"),
            keys: scan.first_keys.unwrap_or_default(),
            rows: 1,
            layout: Layout::Objects,
        }),
        Top::Array => {
            if scan.non_object {
                return Err(if columns_given {
                    ApiError::new(
                        400,
                        ErrorCode::InvalidParameterValue,
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
                layout: Layout::Objects,
            })
        }
    }
}

fn csv_error(e: csv::Error) -> ApiError {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { .. } => ApiError::new(
            400,
            ErrorCode::InvalidBody,
            "All lines must have same number of fields",
        ),
        _ => ApiError::new(400, ErrorCode::InvalidBody, format!("Invalid CSV: {e}")),
    }
}

fn csv_reader(body: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body)
}

/// Whether the first record of a CSV body has more than [`MAX_KEYS`] fields, counted without
/// storing them (the reader would hold the whole record, and a few copies of it, first). A
/// quote opens a quoted field only at the start of a field, as the reader has it.
fn csv_header_too_wide(body: &[u8]) -> bool {
    let mut fields = 1;
    let mut quoted = false;
    let mut field_start = true;
    let mut bytes = body.iter().peekable();
    while let Some(&b) = bytes.next() {
        if quoted {
            if b == b'"' {
                if bytes.peek() == Some(&&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
            continue;
        }
        match b {
            b'"' if field_start => quoted = true,
            b',' => {
                fields += 1;
                if fields > MAX_KEYS {
                    return true;
                }
                field_start = true;
                continue;
            }
            b'\n' | b'\r' => return false,
            _ => {}
        }
        field_start = false;
    }
    false
}

fn read_csv_header(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, ApiError> {
    let header = reader.headers().map_err(csv_error)?;
    if header.len() > MAX_KEYS {
        return Err(too_many_keys());
    }
    let keys: Vec<String> = header.iter().map(str::to_string).collect();
    if keys.is_empty() || keys.iter().all(String::is_empty) {
        return Err(ApiError::new(
            400,
            ErrorCode::InvalidBody,
            "Invalid CSV: the header line is missing",
        ));
    }
    Ok(keys)
}

/// The column names of a CSV body (its header line), read without looking at its rows: what
/// a caller checks against the schema before [`parse_payload`] builds anything.
pub fn csv_header(body: &[u8]) -> Result<Vec<String>, ApiError> {
    if csv_header_too_wide(body) {
        return Err(too_many_keys());
    }
    read_csv_header(&mut csv_reader(body))
}

fn parse_csv(body: &[u8]) -> Result<Payload, ApiError> {
    if csv_header_too_wide(body) {
        return Err(too_many_keys());
    }
    let mut reader = csv_reader(body);
    let keys = read_csv_header(&mut reader)?;
    // Each cell grows by its quotes and a comma (plus escapes); rows by their brackets.
    let mut json = Vec::with_capacity(body.len() + body.len() / 2 + 16);
    json.push(b'[');
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    while reader.read_record(&mut record).map_err(csv_error)? {
        if rows > 0 {
            json.push(b',');
        }
        json.push(b'[');
        for (i, v) in record.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            if v == "NULL" {
                json.extend_from_slice(b"null");
            } else {
                write_json_str(&mut json, v.as_bytes());
            }
        }
        json.push(b']');
        rows += 1;
    }
    json.push(b']');
    Ok(Payload {
        // Built from `&str` cells and ASCII punctuation only.
        json: String::from_utf8(json).map_err(|e| invalid_json(e.utf8_error()))?,
        keys,
        rows,
        layout: Layout::Arrays,
    })
}

fn parse_form(body: &[u8]) -> Result<Payload, ApiError> {
    let mut obj = serde_json::Map::new();
    let mut keys = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if !obj.contains_key(k.as_ref()) {
            if keys.len() == MAX_KEYS {
                return Err(too_many_keys());
            }
            keys.push(k.to_string());
        }
        obj.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
    }
    Ok(Payload {
        json: serde_json::Value::Array(vec![serde_json::Value::Object(obj)]).to_string(),
        keys,
        rows: 1,
        layout: Layout::Objects,
    })
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
        // With `columns`, objects may differ (and their keys are not collected: `columns`
        // decides).
        let p = parse_payload(br#"[{"a":1},{"b":1}]"#, BodyFormat::Json, true).unwrap();
        assert_eq!((p.rows, p.keys.len()), (2, 0));
    }

    #[test]
    fn csv_bodies() {
        let p = parse_payload(b"a,b\n1,hi\n2,NULL\n3,\"x, y\"", BodyFormat::Csv, false).unwrap();
        assert_eq!(p.keys, ["a", "b"]);
        assert_eq!(p.rows, 3);
        assert_eq!(p.layout, Layout::Arrays);
        let v: serde_json::Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([["1", "hi"], ["2", null], ["3", "x, y"]])
        );
        // Values are found by position; a repeated name means its last one.
        let paths = parse_payload(b"a,b,a\n1,2,3", BodyFormat::Csv, false)
            .unwrap()
            .paths();
        assert_eq!(paths.path("$", "a"), "$[2]");
        assert_eq!(paths.path("$[0]", "b"), "$[0][1]");
        assert_eq!(paths.path("$", "c"), "$[3]");
        assert_eq!(ColumnPaths::ByKey.path("$", "a\"b"), "$.\"a\\\"b\"");
        assert_eq!(csv_header(b"x,y\n1").unwrap(), ["x", "y"]);
        let e = parse_payload(b"a,b\n1\n", BodyFormat::Csv, false).unwrap_err();
        assert_eq!(e.message, "All lines must have same number of fields");
        assert_eq!(
            parse_payload(b"", BodyFormat::Csv, false)
                .unwrap_err()
                .code
                .as_str(),
            "PGRST102"
        );
    }

    #[test]
    fn rows_have_at_most_as_many_keys_as_a_table_has_columns() {
        let keys = |n: usize| (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>();
        let object = |n: usize| {
            let fields: Vec<String> = keys(n).iter().map(|k| format!("\"{k}\":1")).collect();
            format!("{{{}}}", fields.join(","))
        };
        let form = |n: usize| {
            keys(n)
                .iter()
                .map(|k| format!("{k}=1"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let csv = |n: usize| keys(n).join(",") + "\n" + &vec!["1"; n].join(",");
        for (format, body) in [
            (BodyFormat::Json, object(MAX_KEYS)),
            (BodyFormat::Form, form(MAX_KEYS)),
            (BodyFormat::Csv, csv(MAX_KEYS)),
        ] {
            assert_eq!(
                parse_payload(body.as_bytes(), format, false)
                    .unwrap()
                    .keys
                    .len(),
                MAX_KEYS
            );
        }
        for (format, body, columns) in [
            (BodyFormat::Json, object(MAX_KEYS + 1), false),
            (
                BodyFormat::Json,
                format!("[{{}},{}]", object(MAX_KEYS + 1)),
                false,
            ),
            (BodyFormat::Form, form(MAX_KEYS + 1), false),
            (BodyFormat::Csv, csv(MAX_KEYS + 1), false),
            (BodyFormat::Csv, csv(MAX_KEYS + 1), true),
        ] {
            let e = parse_payload(body.as_bytes(), format, columns).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "PGRST102"), "{format:?}");
            assert_eq!(
                e.message,
                "A row has more keys than a table can have columns"
            );
        }
        // Quoted commas are not field separators; the first line is the header.
        let quoted = format!("\"{}\"\n{}", ",".repeat(MAX_KEYS + 5), csv(MAX_KEYS + 5));
        assert_eq!(csv_header(quoted.as_bytes()).unwrap().len(), 1);
        assert!(!csv_header_too_wide(
            format!("a\"b,c\n{}", ",".repeat(3000)).as_bytes()
        ));
        assert!(csv_header_too_wide(
            format!("a\"b{}", ",x".repeat(3000)).as_bytes()
        ));
        // With `columns`, the keys of objects are neither collected nor limited.
        let p = parse_payload(object(MAX_KEYS + 1).as_bytes(), BodyFormat::Json, true).unwrap();
        assert_eq!((p.rows, p.keys.len()), (1, 0));
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
