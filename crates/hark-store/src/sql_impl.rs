// Shared by both backends: compiled once as `sqlite::imp` and once as `postgres::imp`,
// each time with that parent's `Db` and dialect constants.

use async_trait::async_trait;
use hark_core::{new_id, Millis};
use serde_json::{Map, Value};
use sqlx::{Pool, QueryBuilder, Row};

use super::{Db, BACKEND_NAME, CLAIM_JOBS_SQL};
use crate::cursor;
use crate::error::StoreError;
use crate::model::*;
use crate::traits::*;

type Tx<'a> = sqlx::Transaction<'a, Db>;
type DbRow = <Db as sqlx::Database>::Row;

/// One store over one database. Writes go through `writer`, reads through `reader` (the
/// same pool on PostgreSQL; a separate read-only pool on SQLite).
pub struct SqlStore {
    writer: Pool<Db>,
    reader: Pool<Db>,
}

impl SqlStore {
    pub(super) fn from_pools(writer: Pool<Db>, reader: Pool<Db>) -> Self {
        Self { writer, reader }
    }

    /// Closes both pools, waiting for in-flight queries.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
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

fn user_from_row(row: &DbRow) -> Result<UserRecord, StoreError> {
    const OP: &str = "read user";
    let properties: String = get(row, "properties", OP)?;
    let properties = match parse_json(&properties, OP)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(UserRecord {
        id: get(row, "id", OP)?,
        properties,
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
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
    inserted_at, updated_at";

fn run_from_row(row: &DbRow) -> Result<RecipientRun, StoreError> {
    const OP: &str = "read recipient run";
    let data: String = get(row, "data", OP)?;
    let status: String = get(row, "status", OP)?;
    Ok(RecipientRun {
        id: get(row, "id", OP)?,
        environment_id: get(row, "environment_id", OP)?,
        workflow_run_id: get(row, "workflow_run_id", OP)?,
        workflow_key: get(row, "workflow_key", OP)?,
        workflow_version: get(row, "workflow_version", OP)?,
        recipient_id: get(row, "recipient_id", OP)?,
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
    inserted_at, updated_at";

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

async fn upsert_user_tx(
    tx: &mut Tx<'_>,
    environment_id: &str,
    id: &str,
    properties: &Map<String, Value>,
    now: Millis,
) -> Result<UserRecord, StoreError> {
    const OP: &str = "upsert user";
    let existing = sqlx::query(
        "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = $1 AND id = $2",
    )
    .bind(environment_id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    let (mut stored, inserted_at) = match existing {
        Some(row) => {
            let user = user_from_row(&row)?;
            (user.properties, user.inserted_at)
        }
        None => (Map::new(), now),
    };
    merge_properties(&mut stored, properties);
    sqlx::query(
        "INSERT INTO users (environment_id, id, properties, inserted_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (environment_id, id) DO UPDATE SET properties = excluded.properties, \
         updated_at = excluded.updated_at",
    )
    .bind(environment_id)
    .bind(id)
    .bind(Value::Object(stored.clone()).to_string())
    .bind(inserted_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    Ok(UserRecord {
        id: id.to_string(),
        properties: stored,
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

/// Re-checks (and on PostgreSQL row-locks) the job so that a worker whose lease expired
/// writes nothing: the fencing check every job commit starts with.
async fn hold_lease(tx: &mut Tx<'_>, job: &ClaimedJob) -> Result<bool, StoreError> {
    let held = sqlx::query("UPDATE jobs SET lease = lease WHERE id = $1 AND lease = $2")
        .bind(&job.id)
        .bind(&job.lease)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("check job lease"))?;
    Ok(held.rows_affected() == 1)
}

async fn insert_message_event(
    tx: &mut Tx<'_>,
    environment_id: &str,
    message_id: &str,
    recipient_id: &str,
    event_type: &str,
    data: &Value,
    now: Millis,
) -> Result<(), StoreError> {
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
    Ok(())
}

fn push_message_filter(qb: &mut QueryBuilder<'_, Db>, environment_id: &str, f: &MessageFilter) {
    qb.push(" WHERE environment_id = ");
    qb.push_bind(environment_id.to_string());
    let eq = |qb: &mut QueryBuilder<'_, Db>, column: &str, value: &Option<String>| {
        if let Some(v) = value {
            qb.push(format!(" AND {column} = "));
            qb.push_bind(v.clone());
        }
    };
    eq(qb, "recipient_id", &f.recipient_id);
    eq(qb, "channel_key", &f.channel_key);
    eq(qb, "workflow_key", &f.workflow_key);
    eq(qb, "workflow_run_id", &f.workflow_run_id);
    eq(qb, "recipient_run_id", &f.recipient_run_id);
    eq(qb, "tenant", &f.tenant);
    match f.has_tenant {
        Some(true) => {
            qb.push(" AND tenant IS NOT NULL");
        }
        Some(false) => {
            qb.push(" AND tenant IS NULL");
        }
        None => {}
    }
    if !f.statuses.is_empty() {
        qb.push(" AND status IN (");
        let mut list = qb.separated(", ");
        for s in &f.statuses {
            list.push_bind(s.clone());
        }
        qb.push(")");
    }
    for e in &f.engagement {
        let clause = match e.as_str() {
            "seen" => " AND seen_at IS NOT NULL",
            "unseen" => " AND seen_at IS NULL",
            "read" => " AND read_at IS NOT NULL",
            "unread" => " AND read_at IS NULL",
            "interacted" => " AND interacted_at IS NOT NULL",
            "link_clicked" => " AND link_clicked_at IS NOT NULL",
            "archived" => " AND archived_at IS NOT NULL",
            "unarchived" => " AND archived_at IS NULL",
            _ => "",
        };
        qb.push(clause);
    }
    match f.archived {
        ArchivedFilter::Exclude => {
            qb.push(" AND archived_at IS NULL");
        }
        ArchivedFilter::Only => {
            qb.push(" AND archived_at IS NOT NULL");
        }
        ArchivedFilter::Include => {}
    }
    if !f.categories.is_empty() {
        qb.push(" AND (");
        for (i, c) in f.categories.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("categories LIKE ");
            qb.push_bind(format!("%{}%", Value::String(c.clone())));
        }
        qb.push(")");
    }
    if !f.message_ids.is_empty() {
        qb.push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in &f.message_ids {
            list.push_bind(id.clone());
        }
        qb.push(")");
    }
    for (op, value) in [
        (">=", f.inserted_at_gte),
        ("<=", f.inserted_at_lte),
        (">", f.inserted_at_gt),
        ("<", f.inserted_at_lt),
    ] {
        if let Some(v) = value {
            qb.push(format!(" AND inserted_at {op} "));
            qb.push_bind(v);
        }
    }
}

/// Appends keyset pagination over `id` for newest-first lists. Returns whether the query
/// walks backwards (a `before` cursor), or `None` when the cursor is malformed.
fn push_id_page(qb: &mut QueryBuilder<'_, Db>, page: &PageRequest, size: i64) -> Option<bool> {
    let backwards = page.before.is_some() && page.after.is_none();
    if let Some(after) = &page.after {
        qb.push(" AND id < ");
        qb.push_bind(cursor::decode(after)?);
    } else if let Some(before) = &page.before {
        qb.push(" AND id > ");
        qb.push_bind(cursor::decode(before)?);
    }
    qb.push(if backwards {
        " ORDER BY id ASC LIMIT "
    } else {
        " ORDER BY id DESC LIMIT "
    });
    qb.push_bind(size + 1);
    Some(backwards)
}

fn empty_page<T>() -> Page<T> {
    Page {
        entries: Vec::new(),
        after: None,
        before: None,
    }
}

#[async_trait]
impl EnvironmentStore for SqlStore {
    async fn ensure_default_environments(&self, now: Millis) -> StoreResult<()> {
        for (slug, name, enhanced) in [
            ("development", "Development", false),
            ("production", "Production", true),
        ] {
            sqlx::query(
                "INSERT INTO environments (id, slug, name, enhanced_security, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slug) DO NOTHING",
            )
            .bind(new_id())
            .bind(slug)
            .bind(name)
            .bind(enhanced)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("ensure environments"))?;
        }
        Ok(())
    }

    async fn environment_by_slug(&self, slug: &str) -> StoreResult<Option<Environment>> {
        let row = sqlx::query("SELECT id, slug, name, enhanced_security, created_at FROM environments WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::db("environment by slug"))?;
        row.as_ref().map(environment_from_row).transpose()
    }

    async fn set_enhanced_security(&self, environment_id: &str, on: bool) -> StoreResult<()> {
        sqlx::query("UPDATE environments SET enhanced_security = $1 WHERE id = $2")
            .bind(on)
            .bind(environment_id)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("set enhanced security"))?;
        Ok(())
    }

    async fn create_api_key(
        &self,
        environment_id: &str,
        kind: KeyKind,
        key_hash: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO api_keys (key_hash, environment_id, kind, created_at) VALUES ($1, $2, $3, $4)")
            .bind(key_hash)
            .bind(environment_id)
            .bind(kind.as_str())
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("create api key"))?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(Environment, KeyKind)>> {
        let row = sqlx::query(
            "SELECT e.id, e.slug, e.name, e.enhanced_security, e.created_at, k.kind \
             FROM api_keys k JOIN environments e ON e.id = k.environment_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("find api key"))?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = get(&row, "kind", "find api key")?;
        let kind = if kind == "secret" {
            KeyKind::Secret
        } else {
            KeyKind::Public
        };
        Ok(Some((environment_from_row(&row)?, kind)))
    }

    async fn create_service_token(&self, token_hash: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("INSERT INTO service_tokens (token_hash, created_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("create service token"))?;
        Ok(())
    }

    async fn service_token_exists(&self, token_hash: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT token_hash FROM service_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::db("find service token"))?;
        Ok(row.is_some())
    }

    async fn add_signing_key(
        &self,
        environment_id: &str,
        public_key_pem: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (id, environment_id, public_key_pem, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(environment_id)
            .bind(public_key_pem)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("add signing key"))?;
        Ok(())
    }

    async fn signing_keys(&self, environment_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT public_key_pem FROM signing_keys WHERE environment_id = $1 ORDER BY id",
        )
        .bind(environment_id)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::db("list signing keys"))?;
        rows.iter()
            .map(|r| get(r, "public_key_pem", "list signing keys"))
            .collect()
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn upsert_user(
        &self,
        environment_id: &str,
        id: &str,
        properties: &Map<String, Value>,
        now: Millis,
    ) -> StoreResult<UserRecord> {
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let user = upsert_user_tx(&mut tx, environment_id, id, properties, now).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit upsert user"))?;
        Ok(user)
    }

    async fn get_user(&self, environment_id: &str, id: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = $1 AND id = $2",
        )
        .bind(environment_id)
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("get user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_user(&self, environment_id: &str, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE environment_id = $1 AND id = $2")
            .bind(environment_id)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("delete user"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_users(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<UserRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = ",
        );
        qb.push_bind(environment_id.to_string());
        let backwards = page.before.is_some() && page.after.is_none();
        let cursor = page.after.as_ref().or(page.before.as_ref());
        if let Some(c) = cursor {
            let Some((ms, id)) = cursor::decode_pair(c) else {
                return Ok(empty_page());
            };
            let op = if backwards { "<" } else { ">" };
            qb.push(format!(" AND (inserted_at {op} "));
            qb.push_bind(ms);
            qb.push(" OR (inserted_at = ");
            qb.push_bind(ms);
            qb.push(format!(" AND id {op} "));
            qb.push_bind(id);
            qb.push("))");
        }
        qb.push(if backwards {
            " ORDER BY inserted_at DESC, id DESC LIMIT "
        } else {
            " ORDER BY inserted_at ASC, id ASC LIMIT "
        });
        qb.push_bind(size + 1);
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::db("list users"))?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(users, size, page, backwards, |u| {
            cursor::encode_pair(u.inserted_at, &u.id)
        }))
    }

    async fn merge_users(
        &self,
        environment_id: &str,
        id: &str,
        from_id: &str,
        now: Millis,
    ) -> StoreResult<Option<UserRecord>> {
        const OP: &str = "merge users";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let mut users = Vec::new();
        for uid in [id, from_id] {
            let row = sqlx::query(
                "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = $1 AND id = $2",
            )
            .bind(environment_id)
            .bind(uid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            match row {
                Some(row) => users.push(user_from_row(&row)?),
                None => return Ok(None),
            }
        }
        let mut merged = users[1].properties.clone();
        merge_properties(&mut merged, &users[0].properties);
        let user = upsert_user_tx(&mut tx, environment_id, id, &merged, now).await?;
        for sql in [
            "UPDATE messages SET recipient_id = $1 WHERE environment_id = $2 AND recipient_id = $3",
            "UPDATE recipient_runs SET recipient_id = $1 WHERE environment_id = $2 AND recipient_id = $3",
            "UPDATE message_events SET recipient_id = $1 WHERE environment_id = $2 AND recipient_id = $3",
        ] {
            sqlx::query(sql)
                .bind(id)
                .bind(environment_id)
                .bind(from_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        sqlx::query("DELETE FROM users WHERE environment_id = $1 AND id = $2")
            .bind(environment_id)
            .bind(from_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(Some(user))
    }

    async fn bulk_identify(
        &self,
        environment_id: &str,
        users: &[(String, Map<String, Value>)],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        for (id, props) in users {
            upsert_user_tx(&mut tx, environment_id, id, props, now).await?;
        }
        let op = completed_bulk("users.identify", users.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk identify"))?;
        Ok(op)
    }

    async fn bulk_delete_users(
        &self,
        environment_id: &str,
        ids: &[String],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        for id in ids {
            sqlx::query("DELETE FROM users WHERE environment_id = $1 AND id = $2")
                .bind(environment_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("bulk delete users"))?;
        }
        let op = completed_bulk("users.delete", ids.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk delete"))?;
        Ok(op)
    }

    async fn get_bulk_operation(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<BulkOperation>> {
        let row =
            sqlx::query("SELECT * FROM bulk_operations WHERE environment_id = $1 AND id = $2")
                .bind(environment_id)
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(StoreError::db("get bulk operation"))?;
        row.as_ref().map(bulk_from_row).transpose()
    }
}

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn save_workflow(
        &self,
        environment_id: &str,
        key: &str,
        definition: &Value,
        commit: bool,
        now: Millis,
    ) -> StoreResult<WorkflowRecord> {
        const OP: &str = "save workflow";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        sqlx::query(
            "INSERT INTO workflows (environment_id, key, active, draft, committed_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $5) \
             ON CONFLICT (environment_id, key) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at",
        )
        .bind(environment_id)
        .bind(key)
        .bind(true)
        .bind(to_json_text(definition))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        if commit {
            let row = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) AS v FROM workflow_versions WHERE environment_id = $1 AND key = $2",
            )
            .bind(environment_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            let version: i64 = get(&row, "v", OP)?;
            let version = version + 1;
            sqlx::query(
                "INSERT INTO workflow_versions (environment_id, key, version, definition, committed_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(environment_id)
            .bind(key)
            .bind(version)
            .bind(to_json_text(definition))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            sqlx::query("UPDATE workflows SET committed_version = $1 WHERE environment_id = $2 AND key = $3")
                .bind(version)
                .bind(environment_id)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        let record = workflow_from_row(&row)?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(record)
    }

    async fn get_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<WorkflowRecord>> {
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::db("get workflow"))?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    async fn list_workflows(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<WorkflowRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM workflows WHERE environment_id = ");
        qb.push_bind(environment_id.to_string());
        let backwards = page.before.is_some() && page.after.is_none();
        if let Some(c) = page.after.as_ref().or(page.before.as_ref()) {
            let Some(key) = cursor::decode(c) else {
                return Ok(empty_page());
            };
            qb.push(if backwards {
                " AND key < "
            } else {
                " AND key > "
            });
            qb.push_bind(key);
        }
        qb.push(if backwards {
            " ORDER BY key DESC LIMIT "
        } else {
            " ORDER BY key ASC LIMIT "
        });
        qb.push_bind(size + 1);
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::db("list workflows"))?;
        let items = rows
            .iter()
            .map(workflow_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(items, size, page, backwards, |w| {
            cursor::encode(&w.key)
        }))
    }

    async fn set_workflow_active(
        &self,
        environment_id: &str,
        key: &str,
        active: bool,
        now: Millis,
    ) -> StoreResult<Option<WorkflowRecord>> {
        sqlx::query("UPDATE workflows SET active = $1, updated_at = $2 WHERE environment_id = $3 AND key = $4")
            .bind(active)
            .bind(now)
            .bind(environment_id)
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("set workflow active"))?;
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_optional(&self.writer)
            .await
            .map_err(StoreError::db("set workflow active"))?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    async fn committed_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<CommittedWorkflow>> {
        const OP: &str = "committed workflow";
        let row = sqlx::query(
            "SELECT w.active, v.version, v.definition FROM workflows w \
             JOIN workflow_versions v ON v.environment_id = w.environment_id AND v.key = w.key AND v.version = w.committed_version \
             WHERE w.environment_id = $1 AND w.key = $2",
        )
        .bind(environment_id)
        .bind(key)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db(OP))?;
        let Some(row) = row else { return Ok(None) };
        let definition: String = get(&row, "definition", OP)?;
        Ok(Some(CommittedWorkflow {
            key: key.to_string(),
            version: get(&row, "version", OP)?,
            active: get(&row, "active", OP)?,
            definition: parse_json(&definition, OP)?,
        }))
    }

    async fn workflow_version(
        &self,
        environment_id: &str,
        key: &str,
        version: i64,
    ) -> StoreResult<Option<Value>> {
        let row = sqlx::query(
            "SELECT definition FROM workflow_versions WHERE environment_id = $1 AND key = $2 AND version = $3",
        )
        .bind(environment_id)
        .bind(key)
        .bind(version)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("workflow version"))?;
        let Some(row) = row else { return Ok(None) };
        let definition: String = get(&row, "definition", "workflow version")?;
        parse_json(&definition, "workflow version").map(Some)
    }
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_trigger(&self, t: &TriggerWrite) -> StoreResult<TriggerOutcome> {
        const OP: &str = "create trigger";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        if let Some(claim) = &t.idempotency {
            let existing = sqlx::query(
                "SELECT request_hash, response, created_at FROM idempotency_keys WHERE environment_id = $1 AND key = $2",
            )
            .bind(&t.environment_id)
            .bind(&claim.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            if let Some(row) = existing {
                let created_at: i64 = get(&row, "created_at", OP)?;
                if created_at >= claim.not_before {
                    let hash: String = get(&row, "request_hash", OP)?;
                    if hash != claim.request_hash {
                        return Ok(TriggerOutcome::IdempotencyKeyReused);
                    }
                    let response: String = get(&row, "response", OP)?;
                    return Ok(TriggerOutcome::Replayed(parse_json(&response, OP)?));
                }
            }
            // An expired key is replaced; a concurrent claim of the same key loses the race
            // on the primary key and is answered from the winner's row below.
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (environment_id, key, request_hash, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (environment_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
                 response = excluded.response, created_at = excluded.created_at \
                 WHERE idempotency_keys.created_at < $6",
            )
            .bind(&t.environment_id)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(to_json_text(&claim.response))
            .bind(t.now)
            .bind(claim.not_before)
            .execute(&mut *tx)
            .await;
            let lost_race = match inserted {
                Ok(done) => done.rows_affected() == 0,
                Err(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    true
                }
                Err(e) => return Err(StoreError::db(OP)(e)),
            };
            if lost_race {
                drop(tx);
                let row = sqlx::query(
                    "SELECT request_hash, response FROM idempotency_keys WHERE environment_id = $1 AND key = $2",
                )
                .bind(&t.environment_id)
                .bind(&claim.key)
                .fetch_one(&self.writer)
                .await
                .map_err(StoreError::db(OP))?;
                let hash: String = get(&row, "request_hash", OP)?;
                if hash != claim.request_hash {
                    return Ok(TriggerOutcome::IdempotencyKeyReused);
                }
                let response: String = get(&row, "response", OP)?;
                return Ok(TriggerOutcome::Replayed(parse_json(&response, OP)?));
            }
        }
        for (id, props) in &t.inline_users {
            upsert_user_tx(&mut tx, &t.environment_id, id, props, t.now).await?;
        }
        sqlx::query(
            "INSERT INTO workflow_runs (id, environment_id, workflow_key, workflow_version, recipient_count, inserted_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.workflow_run_id)
        .bind(&t.environment_id)
        .bind(&t.workflow_key)
        .bind(t.workflow_version)
        .bind(t.recipients.len() as i64)
        .bind(t.now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        let data = to_json_text(&t.data);
        // Multi-row inserts, chunked to stay under SQLite's bound-parameter limit.
        let run_ids: Vec<String> = t.recipients.iter().map(|_| new_id()).collect();
        let pairs: Vec<(&String, &String)> = t.recipients.iter().zip(run_ids.iter()).collect();
        for chunk in pairs.chunks(200) {
            let mut qb =
                QueryBuilder::<Db>::new(format!("INSERT INTO recipient_runs ({RUN_COLUMNS}) "));
            qb.push_values(chunk.iter(), |mut b, (recipient, run_id)| {
                b.push_bind((*run_id).clone())
                    .push_bind(t.environment_id.clone())
                    .push_bind(t.workflow_run_id.clone())
                    .push_bind(t.workflow_key.clone())
                    .push_bind(t.workflow_version)
                    .push_bind((*recipient).clone())
                    .push_bind(t.actor.clone())
                    .push_bind(t.tenant.clone())
                    .push_bind(data.clone())
                    .push_bind(t.cancellation_key.clone())
                    .push_bind(RunStatus::Queued.as_str())
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind(t.now)
                    .push_bind(t.now);
            });
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            let mut qb = QueryBuilder::<Db>::new(
                "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) ",
            );
            qb.push_values(chunk.iter(), |mut b, (_, run_id)| {
                b.push_bind(new_id())
                    .push_bind(t.environment_id.clone())
                    .push_bind(JobKind::AdvanceRun.as_str())
                    .push_bind((*run_id).clone())
                    .push_bind(t.now)
                    .push_bind(None::<String>)
                    .push_bind(0_i64)
                    .push_bind(t.now);
            });
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("commit trigger"))?;
        Ok(TriggerOutcome::Accepted)
    }

    async fn cancel_runs(
        &self,
        environment_id: &str,
        workflow_key: &str,
        cancellation_key: &str,
        recipients: Option<&[String]>,
        now: Millis,
    ) -> StoreResult<u64> {
        const OP: &str = "cancel runs";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let mut qb = QueryBuilder::<Db>::new(
            "UPDATE recipient_runs SET status = 'cancelled', updated_at = ",
        );
        qb.push_bind(now);
        qb.push(" WHERE environment_id = ");
        qb.push_bind(environment_id.to_string());
        qb.push(" AND workflow_key = ");
        qb.push_bind(workflow_key.to_string());
        qb.push(" AND cancellation_key = ");
        qb.push_bind(cancellation_key.to_string());
        qb.push(" AND status IN ('queued', 'processing', 'paused')");
        if let Some(ids) = recipients {
            if ids.is_empty() {
                return Ok(0);
            }
            qb.push(" AND recipient_id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(id.clone());
            }
            qb.push(")");
        }
        qb.push(" RETURNING id");
        let rows = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        for row in &rows {
            let run_id: String = get(row, "id", OP)?;
            sqlx::query("DELETE FROM jobs WHERE ref_id = $1 AND kind = $2")
                .bind(&run_id)
                .bind(JobKind::AdvanceRun.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            sqlx::query(
                "INSERT INTO run_events (id, recipient_run_id, event, status, step_ref, step_type, attempt, data, inserted_at) \
                 VALUES ($1, $2, 'workflow_run_cancelled', 'ok', NULL, NULL, 1, $3, $4)",
            )
            .bind(new_id())
            .bind(&run_id)
            .bind(serde_json::json!({"cancellation_key": cancellation_key}).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(rows.len() as u64)
    }

    async fn get_recipient_run(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<RecipientRun>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recipient_runs WHERE environment_id = $1 AND id = $2"
        ))
        .bind(environment_id)
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("get recipient run"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_recipient_runs(
        &self,
        environment_id: &str,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<RecipientRun>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {RUN_COLUMNS} FROM recipient_runs WHERE environment_id = "
        ));
        qb.push_bind(environment_id.to_string());
        for (column, value) in [
            ("workflow_key", &filter.workflow_key),
            ("recipient_id", &filter.recipient_id),
            ("workflow_run_id", &filter.workflow_run_id),
            ("tenant", &filter.tenant),
        ] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = "));
                qb.push_bind(v.clone());
            }
        }
        if !filter.status.is_empty() {
            qb.push(" AND status IN (");
            let mut list = qb.separated(", ");
            for s in &filter.status {
                list.push_bind(s.clone());
            }
            qb.push(")");
        }
        let Some(backwards) = push_id_page(&mut qb, page, size) else {
            return Ok(empty_page());
        };
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::db("list recipient runs"))?;
        let runs = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(runs, size, page, backwards, |r| {
            cursor::encode(&r.id)
        }))
    }

    async fn run_events(&self, run_id: &str) -> StoreResult<Vec<RunEvent>> {
        const OP: &str = "run events";
        let rows = sqlx::query(
            "SELECT id, event, status, step_ref, step_type, attempt, data, inserted_at FROM run_events \
             WHERE recipient_run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::db(OP))?;
        rows.iter()
            .map(|row| {
                let data: String = get(row, "data", OP)?;
                Ok(RunEvent {
                    id: get(row, "id", OP)?,
                    event: get(row, "event", OP)?,
                    status: get(row, "status", OP)?,
                    step_ref: get(row, "step_ref", OP)?,
                    step_type: get(row, "step_type", OP)?,
                    attempt: get(row, "attempt", OP)?,
                    data: parse_json(&data, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl MessageStore for SqlStore {
    async fn get_message(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE environment_id = $1 AND id = $2"
        ))
        .bind(environment_id)
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("get message"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn list_messages(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<MessageRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages"));
        push_message_filter(&mut qb, environment_id, filter);
        let Some(backwards) = push_id_page(&mut qb, page, size) else {
            return Ok(empty_page());
        };
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::db("list messages"))?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(messages, size, page, backwards, |m| {
            cursor::encode(&m.id)
        }))
    }

    async fn count_feed(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
    ) -> StoreResult<FeedCounts> {
        const OP: &str = "count feed";
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT COUNT(*) AS total, \
             COUNT(*) FILTER (WHERE read_at IS NULL) AS unread, \
             COUNT(*) FILTER (WHERE seen_at IS NULL) AS unseen FROM messages",
        );
        push_message_filter(&mut qb, environment_id, filter);
        let row = qb
            .build()
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::db(OP))?;
        Ok(FeedCounts {
            total: get(&row, "total", OP)?,
            unread: get(&row, "unread", OP)?,
            unseen: get(&row, "unseen", OP)?,
        })
    }

    async fn set_engagement(
        &self,
        environment_id: &str,
        ids: &[String],
        change: Engagement,
        now: Millis,
    ) -> StoreResult<Vec<MessageRecord>> {
        const OP: &str = "set engagement";
        let (column, set) = change.column();
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let sql = if set {
                format!(
                    "UPDATE messages SET {column} = $1, updated_at = $1 WHERE environment_id = $2 AND id = $3 \
                     RETURNING {MESSAGE_COLUMNS}"
                )
            } else {
                format!(
                    "UPDATE messages SET {column} = NULL, updated_at = $1 WHERE environment_id = $2 AND id = $3 \
                     AND {column} IS NOT NULL RETURNING {MESSAGE_COLUMNS}"
                )
            };
            let row = sqlx::query(&sql)
                .bind(now)
                .bind(environment_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            match row {
                Some(row) => {
                    let message = message_from_row(&row)?;
                    insert_message_event(
                        &mut tx,
                        environment_id,
                        &message.id,
                        &message.recipient_id,
                        change.event_type(),
                        &Value::Null,
                        now,
                    )
                    .await?;
                    out.push(message);
                }
                None => {
                    // Unchanged (e.g. marking unread what was never read): report it as is.
                    let row = sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE environment_id = $1 AND id = $2"
                    ))
                    .bind(environment_id)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
                    if let Some(row) = row {
                        out.push(message_from_row(&row)?);
                    }
                }
            }
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(out)
    }

    async fn message_events(
        &self,
        environment_id: &str,
        message_id: &str,
    ) -> StoreResult<Vec<MessageEvent>> {
        const OP: &str = "message events";
        let rows = sqlx::query(
            "SELECT id, message_id, recipient_id, event_type, data, inserted_at FROM message_events \
             WHERE environment_id = $1 AND message_id = $2 ORDER BY id DESC",
        )
        .bind(environment_id)
        .bind(message_id)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::db(OP))?;
        rows.iter()
            .map(|row| {
                let data: String = get(row, "data", OP)?;
                Ok(MessageEvent {
                    id: get(row, "id", OP)?,
                    message_id: get(row, "message_id", OP)?,
                    recipient_id: get(row, "recipient_id", OP)?,
                    event_type: get(row, "event_type", OP)?,
                    data: parse_json(&data, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect()
    }

    async fn delivery_logs(
        &self,
        environment_id: &str,
        message_id: &str,
    ) -> StoreResult<Vec<DeliveryLog>> {
        const OP: &str = "delivery logs";
        let rows = sqlx::query(
            "SELECT id, environment_id, message_id, service_name, request, response, inserted_at \
             FROM delivery_logs WHERE environment_id = $1 AND message_id = $2 ORDER BY id DESC",
        )
        .bind(environment_id)
        .bind(message_id)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::db(OP))?;
        rows.iter()
            .map(|row| {
                let request: String = get(row, "request", OP)?;
                let response: String = get(row, "response", OP)?;
                Ok(DeliveryLog {
                    id: get(row, "id", OP)?,
                    environment_id: get(row, "environment_id", OP)?,
                    message_id: get(row, "message_id", OP)?,
                    service_name: get(row, "service_name", OP)?,
                    request: parse_json(&request, OP)?,
                    response: parse_json(&response, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl JobStore for SqlStore {
    async fn claim_due_jobs(
        &self,
        now: Millis,
        limit: i64,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        const OP: &str = "claim due jobs";
        let lease = new_id();
        let rows = sqlx::query(CLAIM_JOBS_SQL)
            .bind(&lease)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(StoreError::db(OP))?;
        rows.iter()
            .map(|row| {
                let kind: String = get(row, "kind", OP)?;
                Ok(ClaimedJob {
                    id: get(row, "id", OP)?,
                    environment_id: get(row, "environment_id", OP)?,
                    kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                        operation: OP,
                        detail: format!("unknown job kind `{kind}`"),
                    })?,
                    ref_id: get(row, "ref_id", OP)?,
                    attempts: get(row, "attempts", OP)?,
                    lease: get(row, "lease", OP)?,
                })
            })
            .collect()
    }

    async fn load_run_for_job(&self, run_id: &str) -> StoreResult<Option<(RecipientRun, Value)>> {
        const OP: &str = "load run for job";
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recipient_runs WHERE id = $1"
        ))
        .bind(run_id)
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::db(OP))?;
        let Some(row) = row else { return Ok(None) };
        let run = run_from_row(&row)?;
        let definition = self
            .workflow_version(&run.environment_id, &run.workflow_key, run.workflow_version)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                operation: OP,
                detail: format!(
                    "workflow {} version {} is missing",
                    run.workflow_key, run.workflow_version
                ),
            })?;
        Ok(Some((run, definition)))
    }

    async fn commit_step(&self, job: &ClaimedJob, step: &StepCommit) -> StoreResult<bool> {
        const OP: &str = "commit step";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(false);
        }
        if let Some(m) = &step.message {
            // Architecture invariant: the unique key makes a replayed step a no-op.
            let created = sqlx::query(&format!(
                "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, NULL, NULL, NULL, NULL, NULL, $17, $17) \
                 ON CONFLICT (recipient_run_id, step_ref) DO NOTHING"
            ))
            .bind(&m.id)
            .bind(&m.environment_id)
            .bind(&m.recipient_run_id)
            .bind(&m.workflow_run_id)
            .bind(&m.step_ref)
            .bind(&m.workflow_key)
            .bind(m.workflow_version)
            .bind(serde_json::to_string(&m.categories).unwrap_or_else(|_| "[]".into()))
            .bind(&m.channel_key)
            .bind(&m.channel_type)
            .bind(&m.recipient_id)
            .bind(serde_json::to_string(&m.actors).unwrap_or_else(|_| "[]".into()))
            .bind(&m.tenant)
            .bind(&m.status)
            .bind(to_json_text(&m.content))
            .bind(to_json_text(&m.data))
            .bind(m.now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            if created.rows_affected() == 1 {
                insert_message_event(
                    &mut tx,
                    &m.environment_id,
                    &m.id,
                    &m.recipient_id,
                    &format!("message.{}", m.status),
                    &Value::Null,
                    m.now,
                )
                .await?;
                if step.enqueue_delivery {
                    sqlx::query(
                        "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) \
                         VALUES ($1, $2, $3, $4, $5, NULL, 0, $5)",
                    )
                    .bind(new_id())
                    .bind(&m.environment_id)
                    .bind(JobKind::DeliverMessage.as_str())
                    .bind(&m.id)
                    .bind(m.now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
                }
            }
        }
        for e in &step.events {
            sqlx::query(
                "INSERT INTO run_events (id, recipient_run_id, event, status, step_ref, step_type, attempt, data, inserted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&e.id)
            .bind(&step.run_id)
            .bind(&e.event)
            .bind(&e.status)
            .bind(&e.step_ref)
            .bind(&e.step_type)
            .bind(e.attempt)
            .bind(to_json_text(&e.data))
            .bind(e.inserted_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        }
        let status = step.finished.unwrap_or(RunStatus::Processing);
        sqlx::query(
            "UPDATE recipient_runs SET step_cursor = $1, status = $2, updated_at = $3, \
             error_count = error_count + $4 WHERE id = $5 AND status <> 'cancelled'",
        )
        .bind(step.next_cursor)
        .bind(status.as_str())
        .bind(step.now)
        .bind(if step.error { 1_i64 } else { 0_i64 })
        .bind(&step.run_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        if step.finished.is_some() {
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(true)
    }

    async fn commit_delivery(&self, job: &ClaimedJob, d: &DeliveryCommit) -> StoreResult<bool> {
        const OP: &str = "commit delivery";
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(false);
        }
        let row = sqlx::query(
            "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3 RETURNING environment_id, recipient_id",
        )
        .bind(&d.status)
        .bind(d.now)
        .bind(&d.message_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        if let Some(row) = row {
            let environment_id: String = get(&row, "environment_id", OP)?;
            let recipient_id: String = get(&row, "recipient_id", OP)?;
            sqlx::query(
                "INSERT INTO delivery_logs (id, environment_id, message_id, service_name, request, response, inserted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&d.log.id)
            .bind(&environment_id)
            .bind(&d.message_id)
            .bind(&d.log.service_name)
            .bind(to_json_text(&d.log.request))
            .bind(to_json_text(&d.log.response))
            .bind(d.log.inserted_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            insert_message_event(
                &mut tx,
                &environment_id,
                &d.message_id,
                &recipient_id,
                &d.event_type,
                &d.event_data,
                d.now,
            )
            .await?;
        }
        match d.retry_at {
            Some(at) => {
                sqlx::query("UPDATE jobs SET run_at = $1, lease = NULL WHERE id = $2")
                    .bind(at)
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
            }
            None => {
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
            }
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(true)
    }

    async fn complete_job(&self, job: &ClaimedJob) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease = $2")
            .bind(&job.id)
            .bind(&job.lease)
            .execute(&self.writer)
            .await
            .map_err(StoreError::db("complete job"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry_job_at(&self, job: &ClaimedJob, run_at: Millis) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE jobs SET run_at = $1, lease = NULL WHERE id = $2 AND lease = $3")
                .bind(run_at)
                .bind(&job.id)
                .bind(&job.lease)
                .execute(&self.writer)
                .await
                .map_err(StoreError::db("retry job"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_message_for_job(&self, message_id: &str) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        ))
        .bind(message_id)
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::db("load message for job"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn pending_job_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::db("pending job count"))?;
        get(&row, "n", "pending job count")
    }

    async fn next_due_at(&self) -> StoreResult<Option<Millis>> {
        let row = sqlx::query("SELECT MIN(run_at) AS due FROM jobs")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::db("next due job"))?;
        get(&row, "due", "next due job")
    }
}

impl Store for SqlStore {
    fn backend_name(&self) -> &'static str {
        BACKEND_NAME
    }
}
