//! The SQL builder every statement is written with, reads and writes alike: SQL text plus its
//! bound parameters ([`Sql`]). Identifiers go in quoted ([`Sql::quoted`]), values only as `?`
//! parameters ([`Sql::bind`]); the read SQL is in `read/sql.rs`, the write DML in
//! `write/sql.rs`.
//!
//! Every statement a request runs is prepared through [`prepare_cached`], which puts the
//! thread's statement tag ([`with_statement_tag`]) in front of the text: a role's statements
//! are cached apart from every other role's (SQLite's authorizer, which enforces a role's
//! grants, runs when a statement is prepared, never when a cached one is reused).

use std::cell::RefCell;

use rusqlite::types::Value;

use crate::ident::push_quoted;

/// SQL text and its parameters, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
    /// When set, `?1` belongs to the caller and `params[i]` is `?{i + 2}`.
    pub first_reserved: bool,
}

impl Sql {
    /// SQL whose `?1` the caller binds; [`Sql::params`] are `?2`, `?3`, …
    pub fn reserving_first() -> Self {
        Sql {
            first_reserved: true,
            ..Sql::default()
        }
    }
    pub(crate) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    pub(crate) fn bind(&mut self, v: Value) {
        self.text.push('?');
        if self.first_reserved {
            self.text
                .push_str(itoa::Buffer::new().format(self.params.len() + 2));
        }
        self.params.push(v);
    }
    pub(crate) fn quoted(&mut self, name: &str) {
        push_quoted(&mut self.text, name);
    }

    /// Binds the parameters to `stmt`, the statement prepared from [`Sql::text`]: `first` as
    /// `?1` when the SQL reserves it (a write's body; a statement that names no parameter
    /// gets none), then [`Sql::params`]. Reads and writes bind the same way.
    pub(crate) fn bind_to(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        first: Option<&str>,
    ) -> rusqlite::Result<()> {
        let offset = if self.first_reserved {
            if let Some(first) = first
                && stmt.parameter_count() > 0
            {
                stmt.raw_bind_parameter(1, first)?;
            }
            2
        } else {
            1
        };
        for (i, v) in self.params.iter().enumerate() {
            stmt.raw_bind_parameter(i + offset, v)?;
        }
        Ok(())
    }

    /// Binds the parameters of a read (no reserved `?1`) to `stmt`; with `slots`, the SQL was
    /// built from a cached plan and each slot marker among its parameters is bound as the
    /// request's value for that slot (see `read/plan_cache.rs`).
    pub(crate) fn bind_slots(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        slots: Option<&[Value]>,
    ) -> rusqlite::Result<()> {
        let Some(slots) = slots else {
            return self.bind_to(stmt, None);
        };
        for (i, v) in self.params.iter().enumerate() {
            stmt.raw_bind_parameter(
                i + 1 + usize::from(self.first_reserved),
                crate::read::plan_cache::resolve(v, slots),
            )?;
        }
        Ok(())
    }
}

thread_local! {
    /// The statement tag of whatever this thread runs now (see [`with_statement_tag`]).
    static TAG: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `f` with `tag` (an SQL comment, such as `/*role:3*/`, or empty) in front of every
/// statement it prepares through [`prepare_cached`], and restores the previous tag after.
/// A connection's statement cache is keyed by text, so statements run under different tags
/// are prepared, and authorized, apart.
pub fn with_statement_tag<T>(tag: &str, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(t) = self.0.take() {
                TAG.with(|c| *c.borrow_mut() = t);
            }
        }
    }
    let previous = TAG.with(|c| std::mem::replace(&mut *c.borrow_mut(), tag.to_string()));
    let _restore = Restore(Some(previous));
    f()
}

/// `conn.prepare_cached(text)`, with the thread's statement tag in front of `text`.
pub(crate) fn prepare_cached<'c>(
    conn: &'c rusqlite::Connection,
    text: &str,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    TAG.with(|c| {
        let tag = c.borrow();
        if tag.is_empty() {
            conn.prepare_cached(text)
        } else {
            let mut tagged = String::with_capacity(tag.len() + text.len());
            tagged.push_str(&tag);
            tagged.push_str(text);
            conn.prepare_cached(&tagged)
        }
    })
}
