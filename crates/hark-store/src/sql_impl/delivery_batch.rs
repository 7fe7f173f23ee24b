//! Final delivery outcomes of one group commit, written together: the fencing check and
//! the job's removal in one `DELETE … RETURNING`, then the messages' status, the delivery
//! logs and the message events in one request of multi-row statements (one statement on
//! PostgreSQL), instead of a savepoint and about eight statements per delivery.
//!
//! A delivery is plain when its job is done (no retry to schedule) and no other delivery
//! in the batch concerns the same message; the others go through the per-delivery path.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::step_batch::{open_waits, WaitQuestion};
use super::*;

/// Rows per multi-row statement: 6 parameters per log row keeps far below SQLite's
/// bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 500;

/// The deliveries of `batch` that [`write_plain_deliveries`] may write, by index.
pub(super) fn plain_deliveries(batch: &[(ClaimedJob, DeliveryCommit)]) -> HashSet<usize> {
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for (_, d) in batch {
        *per_message.entry(d.message_id.as_str()).or_default() += 1;
    }
    batch
        .iter()
        .enumerate()
        .filter(|(_, (_, d))| d.retry_at.is_none() && per_message[d.message_id.as_str()] == 1)
        .map(|(i, _)| i)
        .collect()
}

/// Writes every delivery of `batch` (all plain) whose job still holds its lease, and says
/// per delivery whether it did (runs its events made due are noted in `after`). Nothing
/// is committed here; an error means none of them may be reported as written.
pub(super) async fn write_plain_deliveries(
    tx: &mut Tx<'_>,
    batch: &[&(ClaimedJob, DeliveryCommit)],
    after: &mut AfterCommit,
) -> StoreResult<Vec<bool>> {
    let finished = finish_held_jobs(tx, batch).await?;
    let held: Vec<&DeliveryCommit> = batch
        .iter()
        .filter(|(job, _)| finished.contains(&job.id))
        .map(|(_, d)| d)
        .collect();
    after.jobs_made_due |= write_delivery_rows(tx, &held).await?;
    Ok(batch
        .iter()
        .map(|(job, _)| finished.contains(&job.id))
        .collect())
}

/// What deliveries whose jobs hold their lease record: each message's status, its
/// delivery logs and its event (a message that no longer exists records nothing), in one
/// request per chunk; then the waits the events signal (whether that made a waiting run
/// due is returned). The per-delivery path writes through here too, with one delivery.
pub(super) async fn write_delivery_rows(
    tx: &mut Tx<'_>,
    held: &[&DeliveryCommit],
) -> StoreResult<bool> {
    const OP: &str = "commit delivery";
    let mut rows = Vec::new();
    for chunk in held.chunks(ROWS_PER_STATEMENT) {
        rows.extend(
            write_delivery_chunk(tx, chunk)
                .await
                .map_err(StoreError::db(OP))?,
        );
    }
    let messages = rows_by_id(&rows, OP, |row| {
        Ok(MessageOwner {
            environment_id: get(row, "environment_id", OP)?,
            recipient_id: get(row, "recipient_id", OP)?,
        })
    })?;
    let written: Vec<(&DeliveryCommit, &MessageOwner)> = held
        .iter()
        .filter_map(|d| messages.get(&d.message_id).map(|owner| (*d, owner)))
        .collect();
    // PostgreSQL's statement answered the waits question too (see
    // `write_delivery_chunk`); SQLite's script asks it next.
    let waited = if STATEMENTS_AS_SCRIPT {
        None
    } else {
        let mut waited = HashSet::new();
        for row in &rows {
            if get::<bool>(row, "waited", OP)? {
                waited.insert(get::<String>(row, "environment_id", OP)?);
            }
        }
        Some(waited)
    };
    signal_delivery_waits(tx, &written, waited).await
}

/// Sets the messages' statuses and writes their logs and events, for one chunk of
/// deliveries; returns the rows of the messages updated (id, environment, recipient).
async fn write_delivery_chunk(
    tx: &mut Tx<'_>,
    chunk: &[&DeliveryCommit],
) -> Result<Vec<DbRow>, sqlx::Error> {
    let logs: Vec<(&DeliveryCommit, &DeliveryLog)> = chunk
        .iter()
        .flat_map(|d| d.logs.iter().map(move |log| (*d, log)))
        .collect();
    if STATEMENTS_AS_SCRIPT {
        // SQLite runs a script's statements in turn: the rows read their messages'
        // owners from `messages`, and the update, last, returns them.
        let mut chain = Chain::new();
        for part in logs.chunks(ROWS_PER_STATEMENT) {
            chain.push(part.len() * 6, |qb| push_log_insert(qb, part, "messages"));
        }
        chain.push(chunk.len() * 5, |qb| {
            push_event_insert(qb, chunk, "messages")
        });
        return chain
            .fetch_all(tx, padded_len(chunk.len()) * 4, |qb| {
                push_status_update(qb, chunk)
            })
            .await;
    }
    // PostgreSQL: one statement, whose rows join the messages its update returned. The
    // rows are bound as arrays, so only the update's text depends on the chunk's size,
    // and no plan made for any number of rows can read the whole `messages` table. It
    // also answers, once per environment of the updated messages, whether any run waits
    // for messages there: the question `open_waits` would otherwise ask in a round trip
    // of its own. (It reads `waits` as of this statement's start rather than the next
    // statement's; a wait committed in between is treated as one committed after the
    // question always was.)
    let mut qb = QueryBuilder::<Db>::new("WITH updated AS (");
    push_status_update(&mut qb, chunk);
    if !logs.is_empty() {
        qb.push("), logs AS (");
        push_log_insert(&mut qb, &logs, "updated");
    }
    qb.push("), events AS (");
    push_event_insert(&mut qb, chunk, "updated");
    qb.push(
        ") SELECT u.id, u.environment_id, u.recipient_id, e.waited FROM updated u JOIN \
         (SELECT d.environment_id, EXISTS (SELECT 1 FROM waits w \
         WHERE w.environment_id = d.environment_id AND w.status = 'open' \
         AND w.event_type = 'message') AS waited \
         FROM (SELECT DISTINCT environment_id FROM updated) d) e \
         ON e.environment_id = u.environment_id",
    );
    qb.build().fetch_all(&mut **tx).await
}

/// Deletes the jobs that still hold the lease this worker claimed them with (the fencing
/// check and the job's end in one statement, row-locking on PostgreSQL); returns their ids.
async fn finish_held_jobs(
    tx: &mut Tx<'_>,
    batch: &[&(ClaimedJob, DeliveryCommit)],
) -> StoreResult<HashSet<String>> {
    const OP: &str = "finish delivery jobs";
    let mut finished = HashSet::new();
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let jobs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(job, _)| (job.id.as_str(), job.lease.as_str()))
            .collect();
        for row in delete_jobs_holding(&jobs)
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?
        {
            finished.insert(get(&row, "id", OP)?);
        }
    }
    Ok(finished)
}

/// Deletes each job `(id, lease)` that still holds that lease, returning its id. The ids
/// let the primary key find the rows; the pairs make the lease exact.
pub(super) fn delete_jobs_holding(jobs: &[(&str, &str)]) -> QueryBuilder<'static, Db> {
    let mut qb = QueryBuilder::<Db>::new("DELETE FROM jobs WHERE id");
    qb.push_one_of(jobs.iter().map(|(id, _)| id.to_string()));
    qb.push(" AND (id, lease) IN (");
    qb.push_values_padded(jobs, |mut row, job| {
        row.push_bind(job.map(|(id, _)| id.to_string()))
            .push_bind(job.map(|(_, lease)| lease.to_string()));
    });
    qb.push(") RETURNING id");
    qb
}

/// Whose message a delivery concerned, as the database reports it.
struct MessageOwner {
    environment_id: String,
    recipient_id: String,
}

/// `UPDATE messages … RETURNING` for one chunk (4 parameters per delivery), the values
/// in a subquery so the statement can end a chain of CTEs on PostgreSQL.
fn push_status_update(qb: &mut QueryBuilder<'static, Db>, chunk: &[&DeliveryCommit]) {
    qb.push(
        "UPDATE messages SET status = CASE WHEN messages.status IN \
         ('delivered', 'bounced', 'undelivered') AND v.status = 'sent' \
         THEN messages.status ELSE v.status END, updated_at = v.updated_at, \
         provider_message_id = COALESCE(v.provider_message_id, messages.provider_message_id) \
         FROM (SELECT column1 AS id, column2 AS status, column3 AS updated_at, \
         column4 AS provider_message_id FROM (",
    );
    qb.push_values_padded(chunk.iter(), |mut b, d| {
        b.push_bind(d.map(|d| d.message_id.clone()))
            .push_bind(d.map(|d| d.status.clone()))
            .push_bind(d.map(|d| d.now))
            .push_bind(d.and_then(|d| d.provider_message_id.clone()));
    });
    qb.push(
        ") AS t) AS v WHERE messages.id = v.id \
         RETURNING messages.id, messages.environment_id, messages.recipient_id",
    );
}

/// Inserts `logs`, for messages found in `messages` (the table, or the rows an update
/// returned), which give each log its environment.
fn push_log_insert(
    qb: &mut QueryBuilder<'static, Db>,
    logs: &[(&DeliveryCommit, &DeliveryLog)],
    messages: &str,
) {
    qb.push(
        "INSERT INTO delivery_logs (id, environment_id, message_id, service_name, request, response, inserted_at) \
         SELECT v.column1, m.environment_id, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (",
    );
    qb.push_rows(Rows::of(logs.iter(), |row, (d, log)| {
        row.push_bind(log.id.as_str())
            .push_bind(d.message_id.as_str())
            .push_bind(log.service_name.as_str())
            .push_bind(to_json_text(&log.request))
            .push_bind(to_json_text(&log.response))
            .push_bind(log.inserted_at);
    }));
    qb.push(format!(") AS v JOIN {messages} m ON m.id = v.column2"));
}

/// Inserts each delivery's message event (`message.sent`, `message.undelivered`, …), for
/// messages found in `messages`, which give each event its environment and recipient.
fn push_event_insert(qb: &mut QueryBuilder<'static, Db>, held: &[&DeliveryCommit], messages: &str) {
    qb.push(
        "INSERT INTO message_events (id, environment_id, message_id, recipient_id, event_type, data, inserted_at) \
         SELECT v.column1, m.environment_id, v.column2, m.recipient_id, v.column3, v.column4, v.column5 FROM (",
    );
    qb.push_rows(Rows::of(held.iter(), |row, d| {
        row.push_bind(new_id())
            .push_bind(d.message_id.as_str())
            .push_bind(d.event_type.as_str())
            .push_bind(to_json_text(&d.event_data))
            .push_bind(d.now);
    }));
    qb.push(format!(") AS v JOIN {messages} m ON m.id = v.column2"));
}

/// The waits the deliveries' events signal: asked once per environment (unless `waited`
/// already names the environments where runs wait for messages), then per message only
/// where runs wait. Returns whether a waiting run was made due.
async fn signal_delivery_waits(
    tx: &mut Tx<'_>,
    written: &[(&DeliveryCommit, &MessageOwner)],
    waited: Option<HashSet<String>>,
) -> StoreResult<bool> {
    let mut made_due = false;
    let environments: BTreeSet<&str> = written
        .iter()
        .map(|(_, owner)| owner.environment_id.as_str())
        .collect();
    let answers = match waited {
        Some(waited) => environments
            .iter()
            .map(|environment_id| waited.contains(*environment_id))
            .collect(),
        None => {
            let questions: Vec<WaitQuestion<'_>> = environments
                .iter()
                .map(|environment_id| WaitQuestion::messages(environment_id))
                .collect();
            open_waits(tx, &questions).await?
        }
    };
    for (environment_id, _) in environments.iter().zip(&answers).filter(|(_, a)| **a) {
        for (d, owner) in written
            .iter()
            .filter(|(_, owner)| owner.environment_id == *environment_id)
        {
            made_due |= signal_message_waits(
                tx,
                &owner.environment_id,
                &d.message_id,
                &owner.recipient_id,
                &d.event_type,
                d.now,
            )
            .await?;
        }
    }
    Ok(made_due)
}
