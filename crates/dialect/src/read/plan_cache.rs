//! The read plan cache: a GET's plan, page statement and shaper kept by the request's *shape*,
//! so a request of a known shape is neither parsed in full nor planned nor built again; only
//! its own values are converted and bound.
//!
//! **The shape** ([`Shape::of`]) is everything that can change the SQL or the response, with
//! the values that end up as bound parameters masked: the relation, GET or HEAD, what the
//! planner reads of the headers (media type, `Prefer: count`, `Range`), the role's name, and the
//! query string piece by piece. A piece `column=[not.]op.value` with a plain column name
//! (ASCII letters, digits, `_`; not a reserved key), one of the comparison operators `eq`,
//! `neq`, `gt`, `gte`, `lt`, `lte`, `isdistinct` written without percent-encoding, is a
//! *slot*: its name and operator are in the key, its value (percent-decoded) is the request's
//! own. So is a list `column=[not.]in.(…)`, whatever its items (the filter parser reads them;
//! a list it refuses leaves the request uncached): the planner binds a list as one JSON array,
//! rebuilt from the request's items. Every other piece is in the key verbatim (`select`,
//! `order`, `limit`, `is.null`, `like`, logic trees, casts, …), so any value of those makes
//! another shape. A
//! query string over [`MAX_QUERY_BYTES`], with more than [`MAX_SLOTS`] slots or with control
//! characters has no shape and is planned as before, uncached.
//!
//! **A cached plan** ([`Template`]) is planned from the shape with each slot's value replaced by
//! a marker (a per-process random text no number or boolean reads as), so each slot's bound
//! parameter is that marker as TEXT wherever the SQL builders put it. A request binds, in place
//! of the marker of slot *i*, its own value for slot *i* converted for the slot's column, by
//! the planner's own conversion (`comparable`): the one the planner applies to a comparison's
//! value, which never fails (so no error of the full parse is skipped: a value that does not
//! decode as UTF-8 leaves the request without a shape, and the full parse gives the error).
//! A plan is kept only after a check on the request that made it: the template's SQL, with
//! that request's values bound in place of the markers, must be the SQL and parameters of the
//! request's real plan, with the same fields, page, count and media type; anything else (a
//! slot the planner reads otherwise, an embed's name used as a column) is never cached.
//!
//! **What a plan is valid for**: the [`SchemaCache::generation`] it was planned against
//! (every schema load, forced reload and role view has its own, so a reload never serves an
//! old plan, and a role's view changes on a permissions reload) and the server's limits. A
//! role whose read row filters take claims is never cached (its plans depend on the token);
//! fixed row filters are part of the role's plan. A shape is looked up before the full parse:
//! when a plan of that shape exists, the query string is known to parse (the parse depends on
//! the shape only), and it is parsed only if the plan turns out stale.
//!
//! **Bounded**: at most [`MAX_ENTRIES`] plans and [`MAX_BYTES`] of estimated weight (key, SQL
//! and plan); a plan heavier than [`MAX_ENTRY_BYTES`] is not kept. A new plan over the bounds
//! evicts arbitrary others (hash order), so unique shapes flooding the cache cost each a
//! plan, as without it, and never memory.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use rusqlite::types::Value;

use crate::access::Access;
use crate::exchange::Method;
use crate::headers::{CountMethod, MediaType, Preferences, RequestHeaders};
use crate::query::{Operation, QueryParams, decode_component, parse_filter_value};
use crate::read::plan::{Limits, ReadPlan, comparable, in_list_json, plan_read_as};
use crate::read::sql;
use crate::schema_cache::{Column, SchemaCache};
use crate::shape::Shaper;
use crate::sql::Sql;

/// A longer query string is never cached.
pub(crate) const MAX_QUERY_BYTES: usize = 1024;
/// A query string with more slots is never cached.
pub(crate) const MAX_SLOTS: usize = 16;
/// Plans kept at most.
pub(crate) const MAX_ENTRIES: usize = 1024;
/// Estimated bytes kept at most, over all plans.
pub(crate) const MAX_BYTES: usize = 4 << 20;
/// A plan estimated heavier is not kept.
pub(crate) const MAX_ENTRY_BYTES: usize = 64 << 10;

/// Keys the planner never reads as a filter's column (see `query/params.rs`).
const RESERVED: [&str; 8] = [
    "select",
    "columns",
    "on_conflict",
    "order",
    "limit",
    "offset",
    "and",
    "or",
];

/// The comparison operators whose value is a slot, with the `.` after them.
const SLOT_OPERATORS: [&str; 7] = ["eq.", "neq.", "gt.", "gte.", "lt.", "lte.", "isdistinct."];

/// Where a slot's value stands in the shape's key (one byte no query string holds).
const SLOT_MARK: char = '\u{1}';

/// The start of every slot marker: random per process, so no request can write one.
static MARKER: LazyLock<String> = LazyLock::new(|| {
    let mut a = RandomState::new().build_hasher();
    a.write_u8(1);
    let mut b = RandomState::new().build_hasher();
    b.write_u8(2);
    format!("pgrst{:016x}{:016x}slot", a.finish(), b.finish())
});

/// The value bound for `v`, a parameter of SQL built from a cached plan: the request's own
/// value when `v` is a slot marker, else `v`.
pub(crate) fn resolve<'a>(v: &'a Value, slots: &'a [Value]) -> &'a Value {
    if let Value::Text(t) = v
        && let Some(i) = marker_slot(t)
        && let Some(s) = slots.get(i)
    {
        return s;
    }
    v
}

/// The slot whose marker `t` is: a comparison's value is bound as the marker itself, an
/// `in.(…)` list as the JSON array of the marker alone (`["<marker>"]`, see `in_list_json`).
fn marker_slot(t: &str) -> Option<usize> {
    let t = t
        .strip_prefix("[\"")
        .and_then(|t| t.strip_suffix("\"]"))
        .unwrap_or(t);
    t.strip_prefix(MARKER.as_str())?.parse().ok()
}

/// One slot of a shape: where its column's name is in the key, and the request's value.
#[derive(Debug, Clone)]
struct Slot {
    name: (usize, usize),
    value: String,
    /// For an `in.(…)` list: its items, as the filter parser reads them (`value` is the
    /// whole list then).
    items: Option<Vec<String>>,
}

/// A request's shape (see the module documentation) and its slots' values.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    key: String,
    /// Where the masked query string starts in `key`.
    query_at: usize,
    slots: Vec<Slot>,
}

impl Shape {
    /// The shape of a GET or HEAD of `relation` with `query` (raw), as `role`, with `headers`
    /// parsed; `None` when the request is not cached.
    pub(crate) fn of(
        method: Method,
        relation: &str,
        query: &str,
        headers: &RequestHeaders,
        role: Option<&str>,
    ) -> Option<Shape> {
        if query.len() > MAX_QUERY_BYTES || query.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return None;
        }
        let mut key = String::with_capacity(32 + relation.len() + query.len());
        let mut n = itoa::Buffer::new();
        key.push(if method == Method::Head { 'H' } else { 'G' });
        key.push(match headers.media {
            MediaType::Json { strip_nulls: false } => 'j',
            MediaType::Json { strip_nulls: true } => 'J',
            MediaType::Singular { strip_nulls: false } => 'o',
            MediaType::Singular { strip_nulls: true } => 'O',
            MediaType::Csv => 'c',
        });
        key.push(match headers.prefer.count {
            None => '-',
            Some(CountMethod::Exact) => 'e',
            Some(CountMethod::Planned) => 'p',
            Some(CountMethod::Estimated) => 'E',
        });
        if let Some((lo, hi)) = headers.range {
            key.push_str(n.format(lo));
            key.push('-');
            if let Some(hi) = hi {
                key.push_str(n.format(hi));
            }
        }
        // Lengths first: a name may hold any character.
        key.push('|');
        key.push_str(n.format(relation.len()));
        key.push(':');
        key.push_str(relation);
        match role {
            Some(r) => {
                key.push_str(n.format(r.len()));
                key.push(':');
                key.push_str(r);
            }
            None => key.push('-'),
        }
        key.push('?');
        let query_at = key.len();
        let mut slots = Vec::new();
        let mut rest = Some(query);
        while let Some(text) = rest {
            let (piece, next) = split_at_byte(text, b'&');
            rest = next;
            if let (k, Some(v)) = split_at_byte(piece, b'=')
                && is_slot_name(k)
                && let Some((op, list)) = slot_operator(v)
            {
                if slots.len() == MAX_SLOTS {
                    return None;
                }
                let value = decode_component(&v[op.len()..]).ok()?.into_owned();
                // A list is read by the filter parser itself (quotes, escapes, blanks); one
                // it refuses leaves the request uncached, so the full parse gives the error.
                let items = match list {
                    false => None,
                    true => match parse_filter_value(&format!("in.{value}")).ok()? {
                        (_, Operation::In(items)) => Some(items),
                        _ => return None,
                    },
                };
                let start = key.len();
                key.push_str(k);
                slots.push(Slot {
                    name: (start, key.len()),
                    value,
                    items,
                });
                key.push('=');
                key.push_str(op);
                key.push(SLOT_MARK);
            } else {
                key.push_str(piece);
            }
            key.push('&');
        }
        Some(Shape {
            key,
            query_at,
            slots,
        })
    }

    /// The query string the plan of this shape is made from: each slot's value a marker.
    fn template_query(&self) -> String {
        let masked = &self.key[self.query_at..];
        let mut out = String::with_capacity(masked.len() + self.slots.len() * 48);
        let mut n = itoa::Buffer::new();
        for (i, part) in masked.split(SLOT_MARK).enumerate() {
            if i > 0 {
                let list = self.slots[i - 1].items.is_some();
                if list {
                    out.push('(');
                }
                out.push_str(&MARKER);
                out.push_str(n.format(i - 1));
                if list {
                    out.push(')');
                }
            }
            out.push_str(part);
        }
        // The pieces were joined with a trailing `&`, which the parser skips.
        out
    }

    fn slot_name(&self, s: &Slot) -> &str {
        &self.key[s.name.0..s.name.1]
    }
}

/// `s` up to the first `b` and what follows it (`None` without one); `split_once` for an
/// ASCII byte, without the general searcher's setup (the pieces are short).
fn split_at_byte(s: &str, b: u8) -> (&str, Option<&str>) {
    match s.bytes().position(|c| c == b) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    }
}

/// A plain column name the parser reads as exactly itself.
fn is_slot_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED.contains(&k)
}

/// `[not.]op.` at the start of a raw filter value, for the slot operators and `in.` (true:
/// the value is a list).
fn slot_operator(v: &str) -> Option<(&str, bool)> {
    let rest = v.strip_prefix("not.").unwrap_or(v);
    let (op, list) = match rest.strip_prefix("in.") {
        Some(_) => ("in.", true),
        None => (
            *SLOT_OPERATORS.iter().find(|op| rest.starts_with(**op))?,
            false,
        ),
    };
    Some((&v[..v.len() - rest.len() + op.len()], list))
}

/// A cached plan: planned with markers for the slots' values.
pub(crate) struct Template {
    generation: u64,
    limits: (Option<i64>, bool),
    pub(crate) plan: ReadPlan,
    pub(crate) sql: Sql,
    pub(crate) shaper: Shaper,
    /// Each slot's column in the root relation (`None`: not a column, the value stays text).
    columns: Vec<Option<Column>>,
    weight: usize,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("generation", &self.generation)
            .field("sql", &self.sql.text)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// True when the plan was made against `cache` with `limits`.
    pub(crate) fn fits(&self, cache: &SchemaCache, limits: Limits) -> bool {
        self.generation == cache.generation() && self.limits == (limits.max_rows, limits.aggregates)
    }

    /// The values `shape`'s request binds for the slots, converted as the planner does.
    pub(crate) fn values(&self, shape: &Shape) -> Vec<Value> {
        shape
            .slots
            .iter()
            .zip(&self.columns)
            .map(|(s, c)| match &s.items {
                None => comparable(&s.value, c.as_ref()),
                Some(items) => Value::Text(in_list_json(items, c.as_ref())),
            })
            .collect()
    }
}

/// Whether a read as `access` may use the cache (see the module documentation).
pub(crate) fn cacheable(access: Option<&Access<'_>>) -> bool {
    access.is_none_or(|a| a.plans_are_claim_free())
}

/// Counters of a [`PlanCache`], for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCacheStats {
    pub entries: usize,
    /// Estimated bytes held.
    pub bytes: usize,
    pub hits: u64,
    /// Plans learnt (kept).
    pub learnt: u64,
    /// Plans not kept: the check against the request's own plan failed, or too heavy.
    pub refused: u64,
    pub evicted: u64,
}

#[derive(Default)]
struct Inner {
    map: std::collections::HashMap<Box<str>, Arc<Template>, foldhash::fast::RandomState>,
    stats: PlanCacheStats,
}

/// The read plan cache (see the module documentation). One per server, shared by its threads.
#[derive(Default)]
pub struct PlanCache {
    inner: Mutex<Inner>,
    /// Apart from the lock: a hit takes it once, for the lookup.
    hits: AtomicU64,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PlanCache {
    /// See [`MAX_ENTRIES`].
    pub const MAX_ENTRIES: usize = MAX_ENTRIES;
    /// See [`MAX_BYTES`].
    pub const MAX_BYTES: usize = MAX_BYTES;
    /// See [`MAX_QUERY_BYTES`].
    pub const MAX_QUERY_BYTES: usize = MAX_QUERY_BYTES;

    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> PlanCacheStats {
        let inner = self.lock();
        PlanCacheStats {
            entries: inner.map.len(),
            hits: self.hits.load(Ordering::Relaxed),
            ..inner.stats
        }
    }

    /// The plan kept for `shape`, whatever it was made against (see [`Template::fits`]).
    pub(crate) fn get(&self, shape: &Shape) -> Option<Arc<Template>> {
        self.lock().map.get(shape.key.as_str()).cloned()
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes and keeps the plan of `shape` after `real`, the plan of the request that has
    /// that shape, was made; kept only if it reproduces it (see the module documentation).
    pub(crate) fn learn(&self, shape: &Shape, real: &Planned<'_>) {
        let made = make(shape, real);
        let mut inner = self.lock();
        let Some(t) = made else {
            inner.stats.refused += 1;
            return;
        };
        let inner = &mut *inner;
        if let Some(old) = inner.map.remove(shape.key.as_str()) {
            inner.stats.bytes -= old.weight;
        }
        while !inner.map.is_empty()
            && (inner.map.len() >= MAX_ENTRIES || inner.stats.bytes + t.weight > MAX_BYTES)
        {
            let Some(k) = inner.map.keys().next().cloned() else {
                break;
            };
            if let Some(old) = inner.map.remove(&k) {
                inner.stats.bytes -= old.weight;
                inner.stats.evicted += 1;
            }
        }
        inner.stats.bytes += t.weight;
        inner.stats.learnt += 1;
        inner.map.insert(shape.key.as_str().into(), Arc::new(t));
    }
}

/// A request's own plan and what it was made with.
pub(crate) struct Planned<'a> {
    pub(crate) plan: &'a ReadPlan,
    pub(crate) cache: &'a SchemaCache,
    pub(crate) relation: &'a str,
    pub(crate) headers: &'a RequestHeaders,
    pub(crate) limits: Limits,
    pub(crate) access: Option<&'a Access<'a>>,
}

/// The template of `shape`, made as `planned` was and checked against it; `None` when it
/// does not reproduce it or is too heavy to keep.
fn make(shape: &Shape, planned: &Planned<'_>) -> Option<Template> {
    let &Planned {
        plan: real,
        cache,
        relation,
        headers,
        limits,
        access,
    } = planned;
    // Only what the shape holds of the headers.
    let shaped = RequestHeaders {
        media: headers.media,
        prefer: Preferences {
            count: headers.prefer.count,
            ..Preferences::default()
        },
        range: headers.range,
        profile_sent: false,
    };
    let params = QueryParams::parse(&shape.template_query()).ok()?;
    let plan = plan_read_as(cache, relation, &params, &shaped, limits, access, false).ok()?;
    let columns: Vec<Option<Column>> = shape
        .slots
        .iter()
        .map(|s| plan.root.relation.column(shape.slot_name(s)).cloned())
        .collect();
    let sql = sql::select(&plan.root);
    let mut t = Template {
        generation: cache.generation(),
        limits: (limits.max_rows, limits.aggregates),
        shaper: Shaper::new(&plan.root.fields, plan.media),
        plan,
        sql,
        columns,
        weight: 0,
    };
    let values = t.values(shape);
    let expected = sql::select(&real.root);
    let same = t.sql.text == expected.text
        && t.sql.params.len() == expected.params.len()
        && t.sql
            .params
            .iter()
            .zip(&expected.params)
            .all(|(p, e)| resolve(p, &values) == e)
        && t.plan.root.fields == real.root.fields
        && t.plan.root.offset == real.root.offset
        && t.plan.root.limit == real.root.limit
        && t.plan.count == real.count
        && t.plan.media == real.media
        && t.plan.max_rows == real.max_rows;
    // Every slot's marker is bound exactly once in the page's statement.
    let markers = t
        .sql
        .params
        .iter()
        .filter(|p| matches!(p, Value::Text(s) if marker_slot(s).is_some()))
        .count();
    t.weight = shape.key.len() + 2 * t.sql.text.len() + node_weight(&t.plan.root) + 512;
    (same && markers == shape.slots.len() && t.weight <= MAX_ENTRY_BYTES).then_some(t)
}

/// Estimated bytes a plan node holds (its fields twice over: the plan's and the shaper's
/// keys), with its embeds. The relation it reads counts in full: a plan kept after a schema
/// reload keeps the old relation alive until it is evicted, so the bound covers it too.
fn node_weight(node: &crate::read::plan::ReadNode) -> usize {
    let relation: usize = node
        .relation
        .columns
        .iter()
        .map(|c| 2 * c.name.len() + c.decl_type.len() + 128)
        .sum();
    let fields: usize = relation
        + node
            .fields
            .iter()
            .map(|f| 2 * f.key.len() + 160)
            .sum::<usize>();
    let children: usize = node
        .children
        .iter()
        .map(|e| node_weight(&e.node) + e.key.len() + 256)
        .sum();
    256 + fields + 96 * (node.conditions.len() + node.order.len()) + children
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> RequestHeaders {
        RequestHeaders::plain_json()
    }

    fn shape(q: &str) -> Option<Shape> {
        Shape::of(Method::Get, "books", q, &headers(), None)
    }

    #[test]
    fn values_of_comparisons_are_masked_and_nothing_else() {
        let a = shape("id=eq.5").unwrap();
        let b = shape("id=eq.6").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.slots[0].value, "5");
        assert_eq!(b.slots[0].value, "6");
        // Decoded values; the operator and negation are part of the key.
        assert_eq!(shape("id=eq.a%20b+c").unwrap().slots[0].value, "a b c");
        for other in [
            "id=neq.5",
            "id=not.eq.5",
            "ID=eq.5",
            "id=eq.5&select=id",
            "id=in.(5)",
            "id=in.(5,6)",
            "id=is.null",
            "id=like.5",
            "id=eq.5&limit=1",
            "id=eq.5&limit=2",
            "id%3Deq.5",
            "id=eq%2E5",
            "limit=eq.5",
            "books.id=eq.5",
            "id->a=eq.5",
        ] {
            assert_ne!(shape(other).map(|s| s.key), Some(a.key.clone()), "{other}");
        }
        // Only plain names and unencoded operators are slots.
        for verbatim in [
            "id=eq%2E5",
            "limit=eq.5",
            "books.id=eq.5",
            "i%64=eq.5",
            "id=i%6E.(5)",
            "id->a=in.(5)",
        ] {
            assert!(shape(verbatim).unwrap().slots.is_empty(), "{verbatim}");
        }
        // The role, the relation, the method and the headers the planner reads are in it.
        let h = headers();
        let key = |m, rel, role: Option<&str>, h: &RequestHeaders| {
            Shape::of(m, rel, "id=eq.1", h, role).unwrap().key
        };
        let base = key(Method::Get, "books", None, &h);
        assert_ne!(base, key(Method::Head, "books", None, &h));
        assert_ne!(base, key(Method::Get, "book", None, &h));
        assert_ne!(base, key(Method::Get, "books", Some("anon"), &h));
        assert_ne!(
            key(Method::Get, "books", Some("a"), &h),
            key(Method::Get, "books", Some("b"), &h)
        );
        let mut csv = headers();
        csv.media = MediaType::Csv;
        assert_ne!(base, key(Method::Get, "books", None, &csv));
        let mut counted = headers();
        counted.prefer.count = Some(CountMethod::Exact);
        assert_ne!(base, key(Method::Get, "books", None, &counted));
        let mut ranged = headers();
        ranged.range = Some((0, Some(9)));
        assert_ne!(base, key(Method::Get, "books", None, &ranged));
    }

    #[test]
    fn in_lists_are_one_slot_whatever_their_items() {
        let one = shape("id=in.(5)").unwrap();
        let three = shape("id=in.(5,%226,7%22,%20x%20)").unwrap();
        let empty = shape("id=in.()").unwrap();
        assert_eq!(one.key, three.key);
        assert_eq!(one.key, empty.key);
        assert_eq!(one.slots[0].items.as_deref(), Some(&["5".to_string()][..]));
        // Decoded, then read by the filter parser itself (quotes keep commas).
        let Ok((_, Operation::In(parsed))) = parse_filter_value("in.(5,\"6,7\", x )") else {
            panic!("the parser refused the list");
        };
        assert_eq!(parsed[..2], ["5".to_string(), "6,7".to_string()]);
        assert_eq!(three.slots[0].items.as_ref(), Some(&parsed));
        assert_eq!(empty.slots[0].items.as_deref(), Some(&[][..]));
        // Negation and the operator stay in the key; a list the parser refuses has no
        // shape (the full parse answers it).
        assert_ne!(shape("id=not.in.(5)").unwrap().key, one.key);
        assert_ne!(shape("id=eq.5").unwrap().key, one.key);
        for bad in ["id=in.(5", "id=in.5", "id=in.(5)x", "id=in.(%225)"] {
            assert!(shape(bad).is_none(), "{bad}");
        }
        // Its marker is the JSON array the planner binds a one-item list as.
        let bound = Value::Text(format!("[\"{}0\"]", *MARKER));
        let value = Value::Text("[5]".into());
        assert_eq!(resolve(&bound, std::slice::from_ref(&value)), &value);
    }

    #[test]
    fn odd_or_long_query_strings_have_no_shape() {
        assert!(shape(&"a".repeat(MAX_QUERY_BYTES + 1)).is_none());
        assert!(shape("id=eq.%FF").is_none());
        assert!(shape("id=eq.\u{1}").is_none());
        let many: Vec<String> = (0..=MAX_SLOTS).map(|i| format!("c{i}=eq.1")).collect();
        assert!(shape(&many.join("&")).is_none());
    }

    #[test]
    fn markers_resolve_to_the_requests_values() {
        let s = shape("a=eq.1&b=gt.x").unwrap();
        let q = s.template_query();
        let params = QueryParams::parse(&q).unwrap();
        assert_eq!(params.filters.len(), 2);
        let slots = [Value::Integer(1), Value::Text("x".into())];
        for (i, (_, f)) in params.filters.iter().enumerate() {
            let crate::query::Operation::Compare { value, .. } = &f.operation else {
                panic!("{f:?}");
            };
            assert_eq!(resolve(&Value::Text(value.clone()), &slots), &slots[i]);
        }
        let plain = Value::Text("pgrst".into());
        assert_eq!(resolve(&plain, &slots), &plain);
    }
}
