//! The SQL builder every statement is written with, reads and writes alike: SQL text plus its
//! bound parameters ([`Sql`]). Identifiers go in quoted ([`Sql::quoted`]), values only as `?`
//! parameters ([`Sql::bind`]); the read SQL is in `read/sql.rs`, the write DML in
//! `write/sql.rs`.

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
}
