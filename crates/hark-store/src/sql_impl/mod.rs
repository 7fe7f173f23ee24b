// Shared by both backends: compiled once as `sqlite::imp` and once as `postgres::imp`,
// each time with that parent's `Db` and dialect constants. One submodule per trait.

mod audiences;
mod chain;
mod connections;
mod delivery_batch;
mod email_layouts;
mod environments;
mod fanout;
mod feed_read;
mod flow;
mod jobs;
mod listing;
mod messages;
mod objects;
mod provider_status;
pub(crate) mod runs;
mod step_batch;
mod subscriptions;
mod trigger_batch;
pub(crate) mod users;
mod workflows;
mod writer;

use async_trait::async_trait;
use hark_core::{new_id, Millis};
use serde_json::{Map, Value};
use sqlx::query_builder::Separated;
use sqlx::{Pool, QueryBuilder, Row};

use super::{feed_event_hub, FEED_EVENTS_BY_NOTIFY};
use super::{
    Db, BACKEND_NAME, CLAIM_JOBS_SQL, CLAIM_WITHOUT_FSYNC, FEED_ENVIRONMENT, FEED_ID, FOR_UPDATE,
    KEPT_CONNECTIONS, LOCK_JOBS_SQL, PROBE_EACH_KEY, SINGLE_WRITER, STATEMENTS_AS_SCRIPT,
    STATE_WITH_BATCH_SQL,
};
use crate::cursor;
use crate::error::StoreError;
use crate::feed_events::{FeedEvent, FeedEventHub, FEED_CHANNEL};
use crate::model::*;
use crate::rows::Rows;
use crate::traits::*;
use chain::Chain;
use connections::Connections;
#[cfg(test)]
pub(crate) use feed_read::feed_read_statement_sql;
use listing::*;
#[cfg(test)]
pub(crate) use listing::{
    feed_page_statements, key_list_statements, push_id_page, push_message_filter,
};
use writer::{Writer, WriterConn};

type Tx<'a> = sqlx::Transaction<'a, Db>;
type DbRow = <Db as sqlx::Database>::Row;

/// Rows an insert takes from its parameters, each backend its own way (see
/// `crate::rows`).
trait InsertRows {
    /// `rows` as the row source of an `INSERT`, or of a join to rows the same statement
    /// just inserted; never to read a table with (see `crate::rows`).
    fn push_rows(&mut self, rows: Rows) -> &mut Self;
}

impl InsertRows for QueryBuilder<'_, Db> {
    fn push_rows(&mut self, rows: Rows) -> &mut Self {
        super::push_rows(self, rows);
        self
    }
}

/// One store over one database. Writes go through `writer`, reads through `reader` (the
/// writer's pool on PostgreSQL; a separate read-only pool on SQLite).
pub struct SqlStore {
    writer: Writer,
    reader: std::sync::Arc<Connections>,
    /// New in-app messages for realtime sockets (see `feed_events`).
    feed_events: FeedEventHub,
    /// Cross-node wake-ups (PostgreSQL only).
    wakeups: Option<std::sync::Arc<crate::wakeups::JobWakeups>>,
    /// Notified after a commit that made jobs nobody holds due now (see
    /// [`AfterCommit::jobs_made_due`]).
    jobs_made_due: tokio::sync::Notify,
}

/// What a transaction announces once it has committed, gathered while it writes.
#[derive(Default)]
pub(super) struct AfterCommit {
    /// New in-app messages for realtime feeds (published here on SQLite; PostgreSQL
    /// sends its `NOTIFY` inside the transaction).
    pub feed: Vec<FeedEvent>,
    /// Jobs already in the table, held by nobody, were made due now: the jobs of runs
    /// whose waits got candidates, the close of a batch that filled up.
    pub jobs_made_due: bool,
}

impl AfterCommit {
    /// Takes over what a savepoint that was kept gathered.
    pub fn absorb(&mut self, mut kept: AfterCommit) {
        self.feed.append(&mut kept.feed);
        self.jobs_made_due |= kept.jobs_made_due;
    }
}

impl SqlStore {
    /// The writer, for tests of connection state (compiled for both backends; only the
    /// SQLite backend's tests read it).
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The read connections, for tests of their hand-on.
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn reader(&self) -> &Connections {
        &self.reader
    }

    /// The rows of `select` (ending in `WHERE `) whose `id` is one of `ids` (and, when
    /// given, whose `environment_id` matches), parsed by `parse`: one read for many ids,
    /// 500 ids per statement to stay under SQLite's bound-parameter limit.
    async fn read_by_ids<T>(
        &self,
        select: &str,
        environment_id: Option<&str>,
        ids: &[String],
        parse: fn(&DbRow) -> StoreResult<T>,
        operation: &'static str,
    ) -> StoreResult<Vec<T>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut qb = select_by_ids(select, environment_id, chunk.to_vec());
            let rows = qb
                .build()
                .fetch_all(&mut *self.reader.acquire().await?)
                .await
                .map_err(StoreError::db(operation))?;
            for row in &rows {
                found.push(parse(row)?);
            }
        }
        Ok(found)
    }

    /// `writer` and `reader` are one pool when the database takes parallel writers.
    pub(super) fn from_pools(writer: Pool<Db>, reader: Pool<Db>) -> Self {
        use std::sync::Arc;
        let feed_events = feed_event_hub(&writer);
        let (writer, reader) = if SINGLE_WRITER {
            (
                Writer::new(Arc::new(Connections::new(writer, None)), true),
                Arc::new(Connections::new(reader, KEPT_CONNECTIONS)),
            )
        } else {
            let shared = Arc::new(Connections::new(writer, KEPT_CONNECTIONS));
            (Writer::new(shared.clone(), false), shared)
        };
        Self {
            writer,
            reader,
            feed_events,
            wakeups: None,
            jobs_made_due: tokio::sync::Notify::new(),
        }
    }

    /// Announces what a committed transaction gathered: new feed messages (SQLite), and
    /// jobs it made due, to this process's workers and (PostgreSQL) to the other nodes'.
    pub(super) fn announce(&self, after: AfterCommit) {
        if !FEED_EVENTS_BY_NOTIFY {
            self.feed_events.publish(after.feed);
        }
        if after.jobs_made_due {
            self.jobs_made_due.notify_one();
            if let Some(wakeups) = &self.wakeups {
                wakeups.announce();
            }
        }
    }

    #[allow(dead_code)] // only the PostgreSQL backend announces jobs across nodes
    pub(super) fn with_job_wakeups(
        mut self,
        wakeups: std::sync::Arc<crate::wakeups::JobWakeups>,
    ) -> Self {
        self.wakeups = Some(wakeups);
        self
    }
}

fn to_json_text(value: &Value) -> String {
    value.to_string()
}

fn parse_json(text: &str, operation: &'static str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        operation,
        detail: e.to_string(),
    })
}

fn parse_strings(text: &str, operation: &'static str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        operation,
        detail: e.to_string(),
    })
}

fn get<'r, T>(row: &'r DbRow, column: &str, operation: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    row.try_get(column).map_err(StoreError::db(operation))
}

/// Rows that carry an `id` column, by that id, with what `value` reads from each.
fn rows_by_id<V>(
    rows: &[DbRow],
    operation: &'static str,
    value: impl Fn(&DbRow) -> Result<V, StoreError>,
) -> Result<std::collections::HashMap<String, V>, StoreError> {
    rows.iter()
        .map(|row| Ok((get(row, "id", operation)?, value(row)?)))
        .collect()
}

fn page_size(page: &PageRequest) -> i64 {
    page.page_size.clamp(1, 100)
}

/// Splits an over-fetched page (`size + 1` rows) into entries and cursors. Rows arrive in
/// list order when `backwards` is false; for `before` queries they arrive reversed.
fn finish_page<T>(
    mut rows: Vec<T>,
    size: i64,
    page: &PageRequest,
    backwards: bool,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    if backwards {
        rows.reverse();
    }
    let first = rows.first().map(&cursor_of);
    let last = rows.last().map(&cursor_of);
    if backwards {
        Page {
            entries: rows,
            after: last,
            before: if more { first } else { None },
        }
    } else {
        Page {
            entries: rows,
            after: if more { last } else { None },
            before: if page.after.is_some() { first } else { None },
        }
    }
}

fn environment_from_row(row: &DbRow) -> Result<Environment, StoreError> {
    const OP: &str = "read environment";
    Ok(Environment {
        id: get(row, "id", OP)?,
        slug: get(row, "slug", OP)?,
        name: get(row, "name", OP)?,
        enhanced_security: get(row, "enhanced_security", OP)?,
        created_at: get(row, "created_at", OP)?,
    })
}

/// What a statement names a user's columns.
struct UserColumns {
    id: &'static str,
    properties: &'static str,
    inserted_at: &'static str,
    updated_at: &'static str,
}

fn user_from_row(row: &DbRow) -> Result<UserRecord, StoreError> {
    user_from_named_row(
        row,
        &UserColumns {
            id: "id",
            properties: "properties",
            inserted_at: "inserted_at",
            updated_at: "updated_at",
        },
    )
}

fn user_from_named_row(row: &DbRow, names: &UserColumns) -> Result<UserRecord, StoreError> {
    const OP: &str = "read user";
    let properties: String = get(row, names.properties, OP)?;
    let properties = match parse_json(&properties, OP)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(UserRecord {
        id: get(row, names.id, OP)?,
        properties,
        inserted_at: get(row, names.inserted_at, OP)?,
        updated_at: get(row, names.updated_at, OP)?,
    })
}

fn workflow_from_row(row: &DbRow) -> Result<WorkflowRecord, StoreError> {
    const OP: &str = "read workflow";
    let draft: String = get(row, "draft", OP)?;
    Ok(WorkflowRecord {
        key: get(row, "key", OP)?,
        active: get(row, "active", OP)?,
        draft: parse_json(&draft, OP)?,
        committed_version: get(row, "committed_version", OP)?,
        created_at: get(row, "created_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

const RUN_COLUMNS: &str = "id, environment_id, workflow_run_id, workflow_key, workflow_version, \
    recipient_id, actor, tenant, data, cancellation_key, status, step_cursor, error_count, \
    inserted_at, updated_at, state, recipient_collection";

/// `recipient_collection` is stored as '' for users (a NOT NULL column keeps it usable in
/// keys and indexes); the records say `None`.
fn collection_from_row(row: &DbRow, op: &'static str) -> Result<Option<String>, StoreError> {
    let collection: String = get(row, "recipient_collection", op)?;
    Ok(Some(collection).filter(|c| !c.is_empty()))
}

fn run_from_row(row: &DbRow) -> Result<RecipientRun, StoreError> {
    const OP: &str = "read recipient run";
    let data: String = get(row, "data", OP)?;
    let state: String = get(row, "state", OP)?;
    let status: String = get(row, "status", OP)?;
    Ok(RecipientRun {
        state: parse_json(&state, OP)?,
        id: get(row, "id", OP)?,
        environment_id: get(row, "environment_id", OP)?,
        workflow_run_id: get(row, "workflow_run_id", OP)?,
        workflow_key: get(row, "workflow_key", OP)?,
        workflow_version: get(row, "workflow_version", OP)?,
        recipient_id: get(row, "recipient_id", OP)?,
        recipient_collection: collection_from_row(row, OP)?,
        actor: get(row, "actor", OP)?,
        tenant: get(row, "tenant", OP)?,
        data: parse_json(&data, OP)?,
        cancellation_key: get(row, "cancellation_key", OP)?,
        status: RunStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            operation: OP,
            detail: format!("unknown run status `{status}`"),
        })?,
        step_cursor: get(row, "step_cursor", OP)?,
        error_count: get(row, "error_count", OP)?,
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, environment_id, recipient_run_id, workflow_run_id, step_ref, \
    workflow_key, workflow_version, categories, channel_key, channel_type, recipient_id, actors, \
    tenant, status, content, data, seen_at, read_at, interacted_at, link_clicked_at, archived_at, \
    inserted_at, updated_at, batch, recipient_collection";

fn message_from_row(row: &DbRow) -> Result<MessageRecord, StoreError> {
    const OP: &str = "read message";
    let categories: String = get(row, "categories", OP)?;
    let actors: String = get(row, "actors", OP)?;
    let content: String = get(row, "content", OP)?;
    let data: String = get(row, "data", OP)?;
    Ok(MessageRecord {
        id: get(row, "id", OP)?,
        environment_id: get(row, "environment_id", OP)?,
        recipient_run_id: get(row, "recipient_run_id", OP)?,
        workflow_run_id: get(row, "workflow_run_id", OP)?,
        step_ref: get(row, "step_ref", OP)?,
        workflow_key: get(row, "workflow_key", OP)?,
        workflow_version: get(row, "workflow_version", OP)?,
        categories: parse_strings(&categories, OP)?,
        channel_key: get(row, "channel_key", OP)?,
        channel_type: get(row, "channel_type", OP)?,
        recipient_id: get(row, "recipient_id", OP)?,
        recipient_collection: collection_from_row(row, OP)?,
        actors: parse_strings(&actors, OP)?,
        tenant: get(row, "tenant", OP)?,
        status: get(row, "status", OP)?,
        content: parse_json(&content, OP)?,
        data: parse_json(&data, OP)?,
        seen_at: get(row, "seen_at", OP)?,
        read_at: get(row, "read_at", OP)?,
        interacted_at: get(row, "interacted_at", OP)?,
        link_clicked_at: get(row, "link_clicked_at", OP)?,
        archived_at: get(row, "archived_at", OP)?,
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
        batch: get::<Option<String>>(row, "batch", OP)?
            .map(|text| parse_json(&text, OP))
            .transpose()?,
    })
}

fn bulk_from_row(row: &DbRow) -> Result<BulkOperation, StoreError> {
    const OP: &str = "read bulk operation";
    let error_items: String = get(row, "error_items", OP)?;
    Ok(BulkOperation {
        id: get(row, "id", OP)?,
        name: get(row, "name", OP)?,
        status: get(row, "status", OP)?,
        estimated_total_rows: get(row, "estimated_total_rows", OP)?,
        processed_rows: get(row, "processed_rows", OP)?,
        success_count: get(row, "success_count", OP)?,
        error_count: get(row, "error_count", OP)?,
        error_items: parse_json(&error_items, OP)?,
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
        started_at: get(row, "started_at", OP)?,
        completed_at: get(row, "completed_at", OP)?,
    })
}

/// Merges identify properties into stored ones: given keys replace, `null` removes.
fn merge_properties(stored: &mut Map<String, Value>, given: &Map<String, Value>) {
    for (key, value) in given {
        if crate_reserved(key) {
            continue;
        }
        if value.is_null() {
            stored.remove(key);
        } else {
            stored.insert(key.clone(), value.clone());
        }
    }
}

fn crate_reserved(key: &str) -> bool {
    hark_core::recipient::RESERVED_USER_FIELDS.contains(&key)
}

/// Creates or updates a property bag (a user or an object) keyed by `environment_id` and
/// `keys`: given properties replace stored ones, `null` removes one. Returns the stored
/// properties and when the row was first inserted.
async fn upsert_properties(
    tx: &mut Tx<'_>,
    table: &str,
    environment_id: &str,
    keys: &[(&str, &str)],
    given: &Map<String, Value>,
    now: Millis,
) -> Result<(Map<String, Value>, Millis), StoreError> {
    const OP: &str = "upsert properties";
    let key_filter: String = keys
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!(" AND {column} = ${}", i + 2))
        .collect();
    let select_sql = format!(
        "SELECT properties, inserted_at FROM {table} WHERE environment_id = $1{key_filter}"
    );
    let mut select = sqlx::query(&select_sql).bind(environment_id);
    for (_, value) in keys {
        select = select.bind(*value);
    }
    let existing = select
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    let (mut stored, inserted_at) = match existing {
        Some(row) => {
            let text: String = get(&row, "properties", OP)?;
            let stored = match parse_json(&text, OP)? {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            (stored, get(&row, "inserted_at", OP)?)
        }
        None => (Map::new(), now),
    };
    merge_properties(&mut stored, given);
    let columns: Vec<&str> = keys.iter().map(|(c, _)| *c).collect();
    let n = keys.len();
    let placeholders: String = (0..n).map(|i| format!(", ${}", i + 2)).collect();
    let insert_sql = format!(
        "INSERT INTO {table} (environment_id, {cols}, properties, inserted_at, updated_at) \
         VALUES ($1{placeholders}, ${p}, ${i}, ${u}) ON CONFLICT (environment_id, {cols}) \
         DO UPDATE SET properties = excluded.properties, updated_at = excluded.updated_at",
        cols = columns.join(", "),
        p = n + 2,
        i = n + 3,
        u = n + 4,
    );
    let mut insert = sqlx::query(&insert_sql).bind(environment_id);
    for (_, value) in keys {
        insert = insert.bind(*value);
    }
    insert
        .bind(Value::Object(stored.clone()).to_string())
        .bind(inserted_at)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    Ok((stored, inserted_at))
}

async fn upsert_user_tx(
    tx: &mut Tx<'_>,
    environment_id: &str,
    id: &str,
    properties: &Map<String, Value>,
    now: Millis,
) -> Result<UserRecord, StoreError> {
    let (properties, inserted_at) =
        upsert_properties(tx, "users", environment_id, &[("id", id)], properties, now).await?;
    Ok(UserRecord {
        id: id.to_string(),
        properties,
        inserted_at,
        updated_at: now,
    })
}

async fn insert_bulk_operation(
    tx: &mut Tx<'_>,
    environment_id: &str,
    op: &BulkOperation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO bulk_operations (id, environment_id, name, status, estimated_total_rows, \
         processed_rows, success_count, error_count, error_items, inserted_at, updated_at, \
         started_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&op.id)
    .bind(environment_id)
    .bind(&op.name)
    .bind(&op.status)
    .bind(op.estimated_total_rows)
    .bind(op.processed_rows)
    .bind(op.success_count)
    .bind(op.error_count)
    .bind(to_json_text(&op.error_items))
    .bind(op.inserted_at)
    .bind(op.updated_at)
    .bind(op.started_at)
    .bind(op.completed_at)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("insert bulk operation"))?;
    Ok(())
}

fn completed_bulk(name: &str, rows: i64, now: Millis) -> BulkOperation {
    BulkOperation {
        id: new_id(),
        name: name.to_string(),
        status: "completed".to_string(),
        estimated_total_rows: rows,
        processed_rows: rows,
        success_count: rows,
        error_count: 0,
        error_items: Value::Array(Vec::new()),
        inserted_at: now,
        updated_at: now,
        started_at: Some(now),
        completed_at: Some(now),
    }
}

/// Keeps a savepoint's writes (`keep`) or rolls them back: how a batch isolates one
/// failing item from the others in its transaction.
async fn end_savepoint(savepoint: Tx<'_>, keep: bool) -> Result<(), StoreError> {
    if keep {
        savepoint
            .commit()
            .await
            .map_err(StoreError::db("release savepoint"))
    } else {
        savepoint
            .rollback()
            .await
            .map_err(StoreError::db("rollback savepoint"))
    }
}

/// Re-checks (and on PostgreSQL row-locks) the job so that a worker whose lease expired
/// writes nothing: the fencing check every job commit starts with.
async fn hold_lease(tx: &mut Tx<'_>, job: &ClaimedJob) -> Result<bool, StoreError> {
    const OP: &str = "check job lease";
    let (head, tail) = LOCK_JOBS_SQL;
    let row = sqlx::query(&format!("{head} = $1{tail}"))
        .bind(&job.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    Ok(match row {
        Some(row) => get::<Option<String>>(&row, "lease", OP)?.as_deref() == Some(&job.lease),
        None => false,
    })
}

async fn insert_run_events(
    tx: &mut Tx<'_>,
    run_id: &str,
    events: &[RunEvent],
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &RunEvent)> = events.iter().map(|e| (run_id, e)).collect();
    insert_run_event_rows(tx, &rows).await
}

/// Run events as `(run id, event)`.
async fn insert_run_event_rows(
    tx: &mut Tx<'_>,
    rows: &[(&str, &RunEvent)],
) -> Result<(), StoreError> {
    Chain::execute_one(tx, "insert run events", |chain| {
        push_run_event_rows(chain, rows)
    })
    .await
}

/// Adds run events as `(run id, event)` to `chain`, in multi-row statements (9
/// parameters per row).
fn push_run_event_rows(chain: &mut Chain, rows: &[(&str, &RunEvent)]) {
    for chunk in rows.chunks(500) {
        chain.push(chunk.len() * 9, |qb| {
            qb.push(
                "INSERT INTO run_events (id, recipient_run_id, event, status, step_ref, step_type, attempt, data, inserted_at) ",
            );
            qb.push_rows(Rows::of(chunk.iter(), |b, (run_id, e)| {
                b.push_bind(e.id.clone())
                    .push_bind(run_id.to_string())
                    .push_bind(e.event.clone())
                    .push_bind(e.status.clone())
                    .push_bind(e.step_ref.clone())
                    .push_bind(e.step_type.clone())
                    .push_bind(e.attempt)
                    .push_bind(to_json_text(&e.data))
                    .push_bind(e.inserted_at);
            }));
            qb.push(" ON CONFLICT (recipient_run_id, id) DO NOTHING");
        });
    }
}

/// Records one message event and hands it to the waits it concerns; returns whether a
/// waiting run's job was made due.
async fn insert_message_event(
    tx: &mut Tx<'_>,
    environment_id: &str,
    message_id: &str,
    recipient_id: &str,
    event_type: &str,
    data: &Value,
    now: Millis,
) -> Result<bool, StoreError> {
    sqlx::query(
        "INSERT INTO message_events (id, environment_id, message_id, recipient_id, event_type, data, inserted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(environment_id)
    .bind(message_id)
    .bind(recipient_id)
    .bind(event_type)
    .bind(to_json_text(data))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("insert message event"))?;
    signal_message_waits(
        tx,
        environment_id,
        message_id,
        recipient_id,
        event_type,
        now,
    )
    .await
}

/// Records a message event as a candidate for every open wait of the recipient on that
/// message's workflow and event, and wakes the waiting runs. One indexed statement when
/// nobody waits. Returns whether a waiting run's job was made due.
async fn signal_message_waits(
    tx: &mut Tx<'_>,
    environment_id: &str,
    message_id: &str,
    recipient_id: &str,
    event_type: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    const OP: &str = "signal message waits";
    let event_key = event_type.strip_prefix("message.").unwrap_or(event_type);
    let signal = new_id();
    let payload = serde_json::json!({"message_id": message_id, "event_type": event_type});
    let recorded = sqlx::query(
        "INSERT INTO wait_events (id, signal_id, wait_id, payload, inserted_at) \
         SELECT $1 || w.id, $1, w.id, $2, $3 FROM waits w JOIN messages m ON m.id = $4 \
         WHERE w.environment_id = $5 AND w.recipient_id = $6 AND w.status = 'open' \
         AND w.event_type = 'message' AND w.event_key = $7 AND w.source_key = m.workflow_key \
         AND w.expires_at >= $3",
    )
    .bind(&signal)
    .bind(to_json_text(&payload))
    .bind(now)
    .bind(message_id)
    .bind(environment_id)
    .bind(recipient_id)
    .bind(event_key)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    if recorded.rows_affected() == 0 {
        return Ok(false);
    }
    wake_signalled_runs(tx, &signal, now).await
}

/// Makes the jobs of runs whose waits got candidates from `signal` due now, and says
/// whether there were any. A job that a worker holds is left alone: that worker
/// re-checks candidates before it sleeps.
async fn wake_signalled_runs(
    tx: &mut Tx<'_>,
    signal: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let woken = sqlx::query(
        "UPDATE jobs SET run_at = $1 WHERE kind = 'advance_run' AND lease IS NULL AND ref_id IN \
         (SELECT w.run_id FROM waits w JOIN wait_events e ON e.wait_id = w.id WHERE e.signal_id = $2)",
    )
    .bind(now)
    .bind(signal)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("wake waiting runs"))?;
    Ok(woken.rows_affected() > 0)
}

/// A workflow lifecycle event (`started`, `completed`) for open waits on that workflow.
/// `runs` says which of the waiting recipient's runs (`r`) the event comes from, with
/// `$4` bound to `selector`.
struct WorkflowSignal<'a> {
    environment_id: &'a str,
    workflow_key: &'a str,
    event_key: &'a str,
    payload: Value,
    runs: &'a str,
    selector: &'a str,
}

/// Records a workflow signal for the open waits it satisfies; `runs` as in
/// [`WorkflowSignal`].
pub(crate) fn workflow_signal_sql(runs: &str) -> String {
    format!(
        "INSERT INTO wait_events (id, signal_id, wait_id, payload, inserted_at) \
         SELECT $1 || w.id, $1, w.id, $2, $3 FROM waits w \
         WHERE w.environment_id = $5 AND w.status = 'open' AND w.event_type = 'workflow' \
         AND w.source_key = $6 AND w.event_key = $7 AND w.expires_at >= $3 \
         AND EXISTS (SELECT 1 FROM recipient_runs r \
         WHERE r.environment_id = $5 AND r.recipient_id = w.recipient_id AND {runs})"
    )
}

async fn signal_workflow_waits(
    tx: &mut Tx<'_>,
    s: &WorkflowSignal<'_>,
    now: Millis,
) -> Result<bool, StoreError> {
    const OP: &str = "signal workflow waits";
    let signal = new_id();
    let recorded = sqlx::query(&workflow_signal_sql(s.runs))
        .bind(&signal)
        .bind(to_json_text(&s.payload))
        .bind(now)
        .bind(s.selector)
        .bind(s.environment_id)
        .bind(s.workflow_key)
        .bind(s.event_key)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    if recorded.rows_affected() == 0 {
        return Ok(false);
    }
    wake_signalled_runs(tx, &signal, now).await
}

impl Store for SqlStore {
    fn backend_name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn single_writer(&self) -> bool {
        SINGLE_WRITER
    }

    fn feed_events(&self) -> &FeedEventHub {
        &self.feed_events
    }

    fn job_wakeups(&self) -> Option<std::sync::Arc<crate::wakeups::JobWakeups>> {
        self.wakeups.clone()
    }

    fn jobs_made_due(&self) -> &tokio::sync::Notify {
        &self.jobs_made_due
    }
}
