//! Several writes of one transaction sent to the database as one request.
//!
//! A group commit's batch writes a handful of multi-row statements. Sent one by one, each
//! waits for its own round trip (on SQLite a hand-off to the connection's thread and back,
//! about 30 µs idle and 150 µs under load), and those waits, not the writes, were most of
//! a batch's time. A chain joins statements whose results are not needed before the next
//! one runs: SQLite gets a script (`a; b; c`, each statement binding its own `?`s in
//! turn), PostgreSQL one statement of data-modifying CTEs (`WITH s0 AS (a), s1 AS (b) c`),
//! which it runs exactly once each, all on the statement's snapshot. So chained
//! statements must not read what an earlier one in the same chain wrote.

use super::*;

/// Bound parameters per request: below SQLite's 32,766 per statement and PostgreSQL's
/// 65,535 per statement, whatever mix of statements a request holds.
const MAX_PARAMS_PER_REQUEST: usize = 30_000;

/// Statements waiting to be sent; `push` adds one, `execute` or `fetch_all` sends them.
pub(super) struct Chain {
    /// Requests already full, in the order they run.
    full: Vec<Request>,
    /// The request that takes the next statement.
    current: Request,
}

struct Request {
    sql: QueryBuilder<'static, Db>,
    statements: usize,
    params: usize,
}

impl Request {
    fn new() -> Self {
        Request {
            sql: QueryBuilder::new(""),
            statements: 0,
            params: 0,
        }
    }

    fn push_statement(
        &mut self,
        params: usize,
        write: impl FnOnce(&mut QueryBuilder<'static, Db>),
    ) {
        if STATEMENTS_AS_SCRIPT {
            if self.statements > 0 {
                self.sql.push("; ");
            }
            write(&mut self.sql);
        } else {
            self.sql
                .push(if self.statements == 0 { "WITH " } else { ", " });
            self.sql.push(format!("s{} AS (", self.statements));
            write(&mut self.sql);
            self.sql.push(")");
        }
        self.statements += 1;
        self.params += params;
    }

    /// Ends the request with `query`, the statement whose rows the request returns.
    fn end_with(&mut self, query: impl FnOnce(&mut QueryBuilder<'static, Db>)) {
        if self.statements > 0 {
            self.sql.push(if STATEMENTS_AS_SCRIPT { "; " } else { " " });
        }
        query(&mut self.sql);
    }

    async fn execute(mut self, tx: &mut Tx<'_>) -> Result<(), sqlx::Error> {
        if self.statements == 0 {
            return Ok(());
        }
        if !STATEMENTS_AS_SCRIPT {
            // The CTEs need a main statement; they run whether or not it reads them.
            self.end_with(|sql| {
                sql.push("SELECT 1");
            });
        }
        self.sql.build().execute(&mut **tx).await.map(|_| ())
    }
}

impl Chain {
    pub(super) fn new() -> Self {
        Chain {
            full: Vec::new(),
            current: Request::new(),
        }
    }

    /// Starts a new request when the current one cannot bind `params` more values.
    fn make_room(&mut self, params: usize) {
        if self.current.statements > 0 && self.current.params + params > MAX_PARAMS_PER_REQUEST {
            let full = std::mem::replace(&mut self.current, Request::new());
            self.full.push(full);
        }
    }

    /// Adds a statement that binds `params` values, written into the builder by `write`.
    /// Its results are not read.
    pub(super) fn push(
        &mut self,
        params: usize,
        write: impl FnOnce(&mut QueryBuilder<'static, Db>),
    ) {
        self.make_room(params);
        self.current.push_statement(params, write);
    }

    /// Runs the statements `push` adds, as one request where they fit.
    pub(super) async fn execute_one(
        tx: &mut Tx<'_>,
        operation: &'static str,
        push: impl FnOnce(&mut Chain),
    ) -> StoreResult<()> {
        let mut chain = Chain::new();
        push(&mut chain);
        chain.execute(tx).await.map_err(StoreError::db(operation))
    }

    /// Runs every statement, in order.
    pub(super) async fn execute(self, tx: &mut Tx<'_>) -> Result<(), sqlx::Error> {
        for request in self.full {
            request.execute(tx).await?;
        }
        self.current.execute(tx).await
    }

    /// Runs every statement, then one statement per chunk of `items` (at most `per_chunk`
    /// items, `params_per_item` bound values each, rows padded to `padded_len`) written by
    /// `query`, the first of them in the chain's last request; returns the rows of all of
    /// them. With no items, only the chain runs. The same snapshot rule as
    /// [`Chain::fetch_all`] holds.
    pub(super) async fn fetch_all_per_chunk<T>(
        self,
        tx: &mut Tx<'_>,
        items: &[T],
        per_chunk: usize,
        params_per_item: usize,
        query: impl Fn(&mut QueryBuilder<'static, Db>, &[T]),
    ) -> Result<Vec<DbRow>, sqlx::Error> {
        let mut chain = Some(self);
        let mut rows = Vec::new();
        for chunk in items.chunks(per_chunk.max(1)) {
            let next = chain.take().unwrap_or_else(Chain::new);
            rows.extend(
                next.fetch_all(tx, padded_len(chunk.len()) * params_per_item, |qb| {
                    query(qb, chunk)
                })
                .await?,
            );
        }
        if let Some(chain) = chain {
            chain.execute(tx).await?;
        }
        Ok(rows)
    }

    /// Runs every statement, in order, then `query` (a `SELECT` that binds at most
    /// `params` values), and returns its rows. `query` reads the database as it was
    /// before the chain on PostgreSQL and after it on SQLite, so it must not depend on
    /// what the chain wrote.
    pub(super) async fn fetch_all(
        mut self,
        tx: &mut Tx<'_>,
        params: usize,
        query: impl FnOnce(&mut QueryBuilder<'static, Db>),
    ) -> Result<Vec<DbRow>, sqlx::Error> {
        self.make_room(params);
        for request in self.full {
            request.execute(tx).await?;
        }
        let mut last = self.current;
        last.end_with(query);
        last.sql.build().fetch_all(&mut **tx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(chain: &mut Chain, params: usize) {
        chain.push(params, |qb| {
            qb.push("INSERT INTO t VALUES (1)");
        });
    }

    #[test]
    fn a_request_holds_statements_up_to_the_parameter_bound() {
        let mut chain = Chain::new();
        insert(&mut chain, 12_500);
        insert(&mut chain, 12_500);
        assert!(chain.full.is_empty());
        assert_eq!(chain.current.statements, 2);
        // A third would bind 37,500: it starts the next request.
        insert(&mut chain, 12_500);
        assert_eq!(chain.full.len(), 1);
        assert_eq!(chain.full[0].statements, 2);
        assert_eq!(chain.current.statements, 1);
        // A statement over the bound on its own still goes, alone.
        insert(&mut chain, 40_000);
        assert_eq!(chain.full.len(), 2);
        assert_eq!(chain.current.params, 40_000);
    }

    #[test]
    fn statements_are_joined_in_the_backends_syntax() {
        let mut chain = Chain::new();
        insert(&mut chain, 1);
        insert(&mut chain, 1);
        let sql = chain.current.sql.sql().to_string();
        if STATEMENTS_AS_SCRIPT {
            assert_eq!(sql, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        } else {
            assert_eq!(
                sql,
                "WITH s0 AS (INSERT INTO t VALUES (1)), s1 AS (INSERT INTO t VALUES (1))"
            );
        }
    }
}
