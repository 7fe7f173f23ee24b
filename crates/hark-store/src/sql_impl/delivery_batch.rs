//! Final delivery outcomes of one group commit, written together: the fencing check and
//! the job's removal in one `DELETE … RETURNING`, then one multi-row statement each for
//! the messages' status, the delivery logs and the message events, instead of a savepoint
//! and about eight statements per delivery.
//!
//! A delivery is plain when its job is done (no retry to schedule) and no other delivery
//! in the batch concerns the same message; the others go through the per-delivery path.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::step_batch::{open_waits, WaitQuestion};
use super::*;

/// Rows per multi-row statement: 7 parameters per log row keeps far below SQLite's
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
/// request; then the waits the events signal (whether that made a waiting run due is
/// returned). The per-delivery path writes through here too, with one delivery.
pub(super) async fn write_delivery_rows(
    tx: &mut Tx<'_>,
    held: &[&DeliveryCommit],
) -> StoreResult<bool> {
    let mut chain = Chain::new();
    push_delivery_logs(&mut chain, held);
    push_delivery_events(&mut chain, held);
    let messages = update_message_statuses(tx, chain, held).await?;
    let written: Vec<(&DeliveryCommit, &MessageOwner)> = held
        .iter()
        .filter_map(|d| messages.get(&d.message_id).map(|owner| (*d, owner)))
        .collect();
    signal_delivery_waits(tx, &written).await
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
        // `id IN (…)` lets the primary key find the rows; the pairs make the lease exact.
        let mut qb = QueryBuilder::<Db>::new("DELETE FROM jobs WHERE id IN (");
        let mut ids = qb.separated(", ");
        for (job, _) in chunk {
            ids.push_bind(job.id.clone());
        }
        qb.push(") AND (id, lease) IN (");
        qb.push_values(chunk.iter(), |mut b, (job, _)| {
            b.push_bind(job.id.clone()).push_bind(job.lease.clone());
        });
        qb.push(") RETURNING id");
        for row in qb
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

/// Whose message a delivery concerned, as the database reports it.
struct MessageOwner {
    environment_id: String,
    recipient_id: String,
}

/// Runs `chain`, then sets each message's status (the first chunk's update ends the
/// chain's request); a provider's callback may have arrived before this commit, so `sent`
/// does not overwrite what the callback already said. Returns whose messages they are.
async fn update_message_statuses(
    tx: &mut Tx<'_>,
    chain: Chain,
    held: &[&DeliveryCommit],
) -> StoreResult<HashMap<String, MessageOwner>> {
    const OP: &str = "commit delivery";
    let rows = chain
        .fetch_all_per_chunk(tx, held, ROWS_PER_STATEMENT, 4, push_status_update)
        .await
        .map_err(StoreError::db(OP))?;
    rows_by_id(&rows, OP, |row| {
        Ok(MessageOwner {
            environment_id: get(row, "environment_id", OP)?,
            recipient_id: get(row, "recipient_id", OP)?,
        })
    })
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
    qb.push_values(chunk.iter(), |mut b, d| {
        b.push_bind(d.message_id.clone())
            .push_bind(d.status.clone())
            .push_bind(d.now)
            .push_bind(d.provider_message_id.clone());
    });
    qb.push(
        ") AS t) AS v WHERE messages.id = v.id \
         RETURNING messages.id, messages.environment_id, messages.recipient_id",
    );
}

/// Adds each delivery's logs to `chain`, for messages that exist (their environment is
/// read from the message).
fn push_delivery_logs(chain: &mut Chain, held: &[&DeliveryCommit]) {
    let logs: Vec<(&DeliveryCommit, &DeliveryLog)> = held
        .iter()
        .flat_map(|d| d.logs.iter().map(move |log| (*d, log)))
        .collect();
    for chunk in logs.chunks(ROWS_PER_STATEMENT) {
        chain.push(chunk.len() * 6, |qb| {
            qb.push(
                "INSERT INTO delivery_logs (id, environment_id, message_id, service_name, request, response, inserted_at) \
                 SELECT v.column1, m.environment_id, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (",
            );
            qb.push_values(chunk.iter(), |mut b, (d, log)| {
                b.push_bind(log.id.clone())
                    .push_bind(d.message_id.clone())
                    .push_bind(log.service_name.clone())
                    .push_bind(to_json_text(&log.request))
                    .push_bind(to_json_text(&log.response))
                    .push_bind(log.inserted_at);
            });
            qb.push(") AS v JOIN messages m ON m.id = v.column2");
        });
    }
}

/// Adds each delivery's message event (`message.sent`, `message.undelivered`, …) to
/// `chain`, for messages that exist.
fn push_delivery_events(chain: &mut Chain, held: &[&DeliveryCommit]) {
    for chunk in held.chunks(ROWS_PER_STATEMENT) {
        chain.push(chunk.len() * 5, |qb| {
            qb.push(
                "INSERT INTO message_events (id, environment_id, message_id, recipient_id, event_type, data, inserted_at) \
                 SELECT v.column1, m.environment_id, v.column2, m.recipient_id, v.column3, v.column4, v.column5 FROM (",
            );
            qb.push_values(chunk.iter(), |mut b, d| {
                b.push_bind(new_id())
                    .push_bind(d.message_id.clone())
                    .push_bind(d.event_type.clone())
                    .push_bind(to_json_text(&d.event_data))
                    .push_bind(d.now);
            });
            qb.push(") AS v JOIN messages m ON m.id = v.column2");
        });
    }
}

/// The waits the deliveries' events signal: asked once per environment, then per message
/// only where runs wait. Returns whether a waiting run was made due.
async fn signal_delivery_waits(
    tx: &mut Tx<'_>,
    written: &[(&DeliveryCommit, &MessageOwner)],
) -> StoreResult<bool> {
    let mut made_due = false;
    let environments: BTreeSet<&str> = written
        .iter()
        .map(|(_, owner)| owner.environment_id.as_str())
        .collect();
    let questions: Vec<WaitQuestion<'_>> = environments
        .iter()
        .map(|environment_id| WaitQuestion::messages(environment_id))
        .collect();
    let answers = open_waits(tx, &questions).await?;
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
