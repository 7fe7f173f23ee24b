//! Rows an `INSERT` takes from its parameters, gathered column by column; each backend
//! writes them into the statement its own way (`push_rows` in `postgres.rs` and
//! `sqlite.rs`):
//!
//! - PostgreSQL binds one array per column and unnests them, so the statement's text
//!   does not depend on how many rows it carries. Each distinct text is parsed, and
//!   planned up to five times before a generic plan is kept, once per connection; with
//!   a `VALUES` list every batch size was a text of its own.
//! - SQLite binds one parameter per cell in a `VALUES` list; it has no arrays, and its
//!   planning is cheap.
//!
//! Only inserts take rows this way (and joins to rows the same statement wrote: new feed
//! messages to their `NOTIFY` payloads, a delivery's logs and events to the messages its
//! update returned). A statement that reads a table with its rows (a join, an
//! `UPDATE … FROM`, an `IN` list) keeps its `VALUES` list, padded to one of a few
//! lengths (`sql_impl::listing::padded_len`): PostgreSQL plans such a text for its length
//! with the table sizes it sees, while a generic plan for any number of rows keeps the
//! table sizes it was made with, and one made while a table was nearly empty scanned all
//! of it once it was not (seen with no statistics kept: a hash join over every message,
//! once per delivery batch).
//!
//! Both name the columns `column1`, `column2`, … (SQLite's names for a `VALUES` list's
//! columns).

/// One value of a row: text or a 64-bit integer, either of them possibly `NULL`.
#[derive(Debug)]
pub enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(Some(value.to_string()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Cell::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Cell::Int(value)
    }
}

/// One column's values, a row each.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Column {
    fn of(cell: Cell, capacity: usize) -> Self {
        match cell {
            Cell::Text(value) => {
                let mut values = Vec::with_capacity(capacity);
                values.push(value);
                Column::Text(values)
            }
            Cell::Int(value) => {
                let mut values = Vec::with_capacity(capacity);
                values.push(value);
                Column::Int(values)
            }
        }
    }

    fn push(&mut self, cell: Cell) {
        match (self, cell) {
            (Column::Text(values), Cell::Text(value)) => values.push(value),
            (Column::Int(values), Cell::Int(value)) => values.push(value),
            (column, cell) => {
                debug_assert!(false, "a {cell:?} in a column of another type");
                column.push_null();
            }
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::Text(values) => values.push(None),
            Column::Int(values) => values.push(None),
        }
    }
}

/// Rows with the same columns, each column's type set by its first row's value.
#[derive(Debug, Default)]
pub struct Rows {
    columns: Vec<Column>,
    len: usize,
}

impl Rows {
    /// One row per item, its cells written by `write` in column order.
    pub fn of<I: IntoIterator>(
        items: I,
        mut write: impl FnMut(&mut RowWriter<'_>, I::Item),
    ) -> Self {
        let items = items.into_iter();
        let mut rows = Rows::default();
        let capacity = items.size_hint().0;
        for item in items {
            let mut row = RowWriter {
                rows: &mut rows,
                next: 0,
                capacity,
            };
            write(&mut row, item);
            row.finish();
            rows.len += 1;
        }
        rows
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn into_columns(self) -> Vec<Column> {
        self.columns
    }
}

/// Writes one row's cells, left to right.
pub struct RowWriter<'a> {
    rows: &'a mut Rows,
    next: usize,
    capacity: usize,
}

impl RowWriter<'_> {
    /// The row's next cell (named like `QueryBuilder`'s, which a row's cells once went to).
    pub fn push_bind(&mut self, value: impl Into<Cell>) -> &mut Self {
        let cell = value.into();
        match self.rows.columns.get_mut(self.next) {
            Some(column) => column.push(cell),
            None if self.rows.len == 0 => {
                self.rows.columns.push(Column::of(cell, self.capacity));
            }
            // Every call site writes rows of one shape; a longer row is a bug.
            None => debug_assert!(false, "a row longer than the first"),
        }
        self.next += 1;
        self
    }

    /// Pads a row shorter than the first with `NULL`s, so every column keeps a value per
    /// row.
    fn finish(self) {
        debug_assert!(
            self.rows.len == 0 || self.next == self.rows.columns.len(),
            "a row shorter than the first"
        );
        for column in self.rows.columns.iter_mut().skip(self.next) {
            column.push_null();
        }
    }
}

/// A sample of every kind of cell for the backends' tests: `n` rows of non-ASCII text,
/// integers and nulls.
#[cfg(test)]
pub(crate) fn sample_rows(n: i64) -> Rows {
    Rows::of(0..n, |row, i| {
        row.push_bind(format!("é-{i}"))
            .push_bind((i % 2 == 0).then_some(i))
            .push_bind((i % 2 == 1).then(|| "ü".to_string()));
    })
}

/// What a table `t (a, b, c)` holds after `sample_rows(3)`, ordered by `a`.
#[cfg(test)]
pub(crate) type SampleRow = (String, Option<i64>, Option<String>);

#[cfg(test)]
pub(crate) fn sample_rows_read_back() -> Vec<SampleRow> {
    vec![
        ("é-0".to_string(), Some(0), None),
        ("é-1".to_string(), None, Some("ü".to_string())),
        ("é-2".to_string(), Some(2), None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_gathered_column_by_column_with_their_nulls() {
        let rows = Rows::of([("a", Some(1_i64)), ("b", None)], |row, (text, number)| {
            row.push_bind(text)
                .push_bind(number)
                .push_bind(None::<String>);
        });
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows.into_columns(),
            vec![
                Column::Text(vec![Some("a".into()), Some("b".into())]),
                Column::Int(vec![Some(1), None]),
                Column::Text(vec![None, None]),
            ]
        );
    }
}
