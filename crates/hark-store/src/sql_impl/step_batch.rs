//! Plain step outcomes of one group commit, written together: one multi-row statement per
//! table for the whole batch instead of a savepoint and about a dozen statements per step.
//!
//! A step is plain when it only creates a message, records events and moves or finishes
//! its run: no workflows started, no waits opened or closed, no pause. Runs and messages
//! that other runs wait on are rare, so the batch first asks whether such waits exist and
//! hands only the rows they concern to the per-step statements.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::jobs::signal_run_completed;
use super::*;

/// Rows per multi-row statement: 25 parameters per message row stays far below SQLite's
/// bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 500;

/// Whether `step` may be written by [`write_plain_steps`].
pub(super) fn is_plain(step: &StepCommit) -> bool {
    step.triggers.is_empty()
        && step.new_wait.is_none()
        && step.close_wait.is_none()
        && step.drop_wait_events.is_empty()
        && step.resume_at.is_none()
}

/// Writes every step of `batch` (all plain) inside `tx` whose job still holds its lease,
/// and says per step whether it did, with the delivery job it wrote leased to the writer;
/// what to announce after the commit goes into `after`. Nothing is committed here; an
/// error means none of them may be reported as written.
pub(super) async fn write_plain_steps(
    tx: &mut Tx<'_>,
    batch: &[&(ClaimedJob, StepCommit)],
    after: &mut AfterCommit,
) -> StoreResult<Vec<Written<bool>>> {
    let held = hold_leases(tx, batch).await?;
    let steps: Vec<&(ClaimedJob, StepCommit)> = batch
        .iter()
        .zip(&held)
        .filter(|(_, held)| **held)
        .map(|(step, _)| *step)
        .collect();
    let messages: Vec<&NewMessage> = steps
        .iter()
        .filter_map(|(_, s)| s.message.as_ref())
        .collect();
    let created = insert_messages(tx, &messages).await?;
    let created: Vec<(&NewMessage, &StepCommit)> = steps
        .iter()
        .filter_map(|(_, s)| s.message.as_ref().map(|m| (m, s)))
        .filter(|(m, _)| created.contains(&m.id))
        .collect();
    note_feed_messages(&created, &mut after.feed);
    // Everything else the steps write goes in one request, ending with the runs' update.
    let mut chain = Chain::new();
    push_message_events(&mut chain, &created);
    // Leased delivery jobs by the message they deliver.
    let mut leased: HashMap<String, ClaimedJob> = push_delivery_jobs(&mut chain, &created)
        .into_iter()
        .map(|job| (job.ref_id.clone(), job))
        .collect();
    let events: Vec<(&str, &RunEvent)> = steps
        .iter()
        .flat_map(|(_, s)| s.events.iter().map(|e| (s.run_id.as_str(), e)))
        .collect();
    push_run_event_rows(&mut chain, &events);
    let finished: Vec<&str> = steps
        .iter()
        .filter(|(_, s)| s.finished.is_some())
        .map(|(job, _)| job.id.as_str())
        .collect();
    for chunk in finished.chunks(ROWS_PER_STATEMENT) {
        chain.push(padded_len(chunk.len()), |qb| {
            qb.push("DELETE FROM jobs WHERE id");
            qb.push_one_of(chunk.iter().map(|id| id.to_string()));
        });
    }
    let updated = update_runs(tx, chain, &steps).await?;
    after.jobs_made_due |= signal_waits(tx, &created, completed_runs(&steps, &updated)).await?;
    Ok(batch
        .iter()
        .zip(held)
        .map(|((_, step), held)| Written {
            outcome: held,
            leased_jobs: step
                .message
                .as_ref()
                .and_then(|m| leased.remove(&m.id))
                .into_iter()
                .collect(),
        })
        .collect())
}

/// The realtime event of a new message, if it has one: in-app messages of users (an
/// object's feed is read over HTTP only).
fn feed_event(m: &NewMessage) -> Option<FeedEvent> {
    (m.channel_type == hark_core::workflow::ChannelType::InAppFeed.as_str()
        && m.recipient_collection.is_none())
    .then(|| FeedEvent::of(m))
}

/// Gathers the realtime events of the messages created, for after the commit (their
/// `NOTIFY` on PostgreSQL went with the insert).
pub(super) fn note_feed_messages(
    created: &[(&NewMessage, &StepCommit)],
    feed: &mut Vec<FeedEvent>,
) {
    feed.extend(created.iter().filter_map(|(m, _)| feed_event(m)));
}

/// The fencing check of every job in the batch in one statement (row-locking them on
/// PostgreSQL): a job holds when its lease is still the one this worker claimed.
async fn hold_leases(
    tx: &mut Tx<'_>,
    batch: &[&(ClaimedJob, StepCommit)],
) -> StoreResult<Vec<bool>> {
    const OP: &str = "check job leases";
    let mut current: HashMap<String, Option<String>> = HashMap::new();
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let (head, tail) = LOCK_JOBS_SQL;
        let mut qb = QueryBuilder::<Db>::new(head);
        qb.push_one_of(chunk.iter().map(|(job, _)| job.id.clone()));
        qb.push(tail);
        for row in qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?
        {
            current.insert(get(&row, "id", OP)?, get(&row, "lease", OP)?);
        }
    }
    Ok(batch
        .iter()
        .map(|(job, _)| current.get(&job.id).and_then(|l| l.as_deref()) == Some(job.lease.as_str()))
        .collect())
}

/// Inserts the messages; returns the ids of those created (architecture invariant: the
/// unique key makes a replayed step insert nothing). On PostgreSQL the same statement
/// sends the `NOTIFY` of each created feed message (delivered on commit), which saves the
/// transaction a round trip.
pub(super) async fn insert_messages(
    tx: &mut Tx<'_>,
    messages: &[&NewMessage],
) -> StoreResult<HashSet<String>> {
    const OP: &str = "commit step";
    let mut created = HashSet::new();
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        let announcements: Vec<(String, String)> = if FEED_EVENTS_BY_NOTIFY {
            chunk
                .iter()
                .filter_map(|m| feed_event(m))
                .map(|event| {
                    serde_json::to_string(&event)
                        .map(|payload| (event.message_id, payload))
                        .map_err(|e| StoreError::Corrupt {
                            operation: OP,
                            detail: e.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let mut qb = QueryBuilder::<Db>::new("");
        if !announcements.is_empty() {
            qb.push("WITH created AS (");
        }
        qb.push(format!("INSERT INTO messages ({MESSAGE_COLUMNS}) "));
        qb.push_rows(Rows::of(chunk.iter(), |b, m| {
            b.push_bind(m.id.clone())
                .push_bind(m.environment_id.clone())
                .push_bind(m.recipient_run_id.clone())
                .push_bind(m.workflow_run_id.clone())
                .push_bind(m.step_ref.clone())
                .push_bind(m.workflow_key.clone())
                .push_bind(m.workflow_version)
                .push_bind(serde_json::to_string(&m.categories).unwrap_or_else(|_| "[]".into()))
                .push_bind(m.channel_key.clone())
                .push_bind(m.channel_type.clone())
                .push_bind(m.recipient_id.clone())
                .push_bind(serde_json::to_string(&m.actors).unwrap_or_else(|_| "[]".into()))
                .push_bind(m.tenant.clone())
                .push_bind(m.status.clone())
                .push_bind(to_json_text(&m.content))
                .push_bind(to_json_text(&m.data))
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(m.now)
                .push_bind(m.now)
                .push_bind(m.batch.as_ref().map(to_json_text))
                .push_bind(m.recipient_collection.clone().unwrap_or_default());
        }));
        qb.push(" ON CONFLICT (recipient_run_id, step_ref) DO NOTHING RETURNING id");
        if !announcements.is_empty() {
            // Only messages the insert created are announced: a replayed step's are not.
            qb.push(
                ") SELECT created.id, (CASE WHEN announced.payload IS NULL THEN NULL \
                 ELSE pg_notify(",
            );
            qb.push_bind(FEED_CHANNEL);
            qb.push(", announced.payload) END) IS NOT NULL AS announced FROM created LEFT JOIN (");
            qb.push_rows(Rows::of(announcements, |b, (id, payload)| {
                b.push_bind(id).push_bind(payload);
            }));
            qb.push(") AS announced (id, payload) ON announced.id = created.id");
        }
        for row in qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?
        {
            created.insert(get(&row, "id", OP)?);
        }
    }
    Ok(created)
}

/// The first event of each new message (`message.{status}`), and the waits it signals;
/// whether that made a waiting run due.
pub(super) async fn insert_message_events(
    tx: &mut Tx<'_>,
    created: &[(&NewMessage, &StepCommit)],
) -> StoreResult<bool> {
    Chain::execute_one(tx, "insert message event", |chain| {
        push_message_events(chain, created)
    })
    .await?;
    signal_waits(tx, created, Vec::new()).await
}

/// Adds the first event of each new message (`message.{status}`) to `chain`.
fn push_message_events(chain: &mut Chain, created: &[(&NewMessage, &StepCommit)]) {
    for chunk in created.chunks(ROWS_PER_STATEMENT) {
        chain.push(chunk.len() * 7, |qb| {
            qb.push(
                "INSERT INTO message_events (id, environment_id, message_id, recipient_id, event_type, data, inserted_at) ",
            );
            qb.push_rows(Rows::of(chunk.iter(), |b, (m, _)| {
                b.push_bind(new_id())
                    .push_bind(m.environment_id.clone())
                    .push_bind(m.id.clone())
                    .push_bind(m.recipient_id.clone())
                    .push_bind(format!("message.{}", m.status))
                    .push_bind(to_json_text(&Value::Null))
                    .push_bind(m.now);
            }));
        });
    }
}

/// Hands each new message's first event to the runs waiting for messages, and each
/// completed run's `workflow.completed` to the runs waiting for it; whether a waiting run
/// was made due. Such waits are rare, so one statement first asks which environments
/// have runs waiting for messages and which workflows' completions are waited on, and
/// only the rows those concern go to the per-row statements.
async fn signal_waits(
    tx: &mut Tx<'_>,
    created: &[(&NewMessage, &StepCommit)],
    completed: Vec<(&StepCommit, &UpdatedRun)>,
) -> StoreResult<bool> {
    let environments: BTreeSet<&str> = created
        .iter()
        .map(|(m, _)| m.environment_id.as_str())
        .collect();
    let workflows: BTreeSet<(&str, &str)> = completed
        .iter()
        .map(|(_, u)| (u.environment_id.as_str(), u.workflow_key.as_str()))
        .collect();
    let questions: Vec<WaitQuestion<'_>> = environments
        .iter()
        .map(|environment_id| WaitQuestion::messages(environment_id))
        .chain(workflows.iter().map(|(environment_id, workflow_key)| {
            WaitQuestion::completions(environment_id, workflow_key)
        }))
        .collect();
    let answers = open_waits(tx, &questions).await?;
    let (for_messages, for_workflows) = answers.split_at(environments.len());
    let mut made_due = false;
    for (environment_id, _) in environments.iter().zip(for_messages).filter(|(_, a)| **a) {
        for (m, _) in created
            .iter()
            .filter(|(m, _)| m.environment_id == *environment_id)
        {
            made_due |= signal_message_waits(
                tx,
                &m.environment_id,
                &m.id,
                &m.recipient_id,
                &format!("message.{}", m.status),
                m.now,
            )
            .await?;
        }
    }
    for ((environment_id, workflow_key), _) in
        workflows.iter().zip(for_workflows).filter(|(_, a)| **a)
    {
        for (step, _) in completed
            .iter()
            .filter(|(_, u)| u.environment_id == *environment_id && u.workflow_key == *workflow_key)
        {
            made_due |= signal_run_completed(tx, &step.run_id, step.now).await?;
        }
    }
    Ok(made_due)
}

/// Writes a delivery job for each new message that is to be delivered; returns those
/// written leased to the writer.
pub(super) async fn insert_delivery_jobs(
    tx: &mut Tx<'_>,
    created: &[(&NewMessage, &StepCommit)],
) -> StoreResult<Vec<ClaimedJob>> {
    let mut leased = Vec::new();
    Chain::execute_one(tx, "enqueue deliveries", |chain| {
        leased = push_delivery_jobs(chain, created);
    })
    .await?;
    Ok(leased)
}

/// Adds a delivery job for each new message that is to be delivered to `chain`; returns
/// the jobs whose step asked for them to be leased to the writer, as it holds them.
fn push_delivery_jobs(
    chain: &mut Chain,
    created: &[(&NewMessage, &StepCommit)],
) -> Vec<ClaimedJob> {
    let deliveries: Vec<(&NewMessage, Option<&JobLease>, String)> = created
        .iter()
        .filter(|(_, step)| step.enqueue_delivery)
        .map(|(m, step)| (*m, step.delivery_lease.as_ref(), new_id()))
        .collect();
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        chain.push(chunk.len() * 8, |qb| {
            qb.push(
                "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) ",
            );
            qb.push_rows(Rows::of(chunk.iter(), |b, (m, lease, job_id)| {
                b.push_bind(job_id.clone())
                    .push_bind(m.environment_id.clone())
                    .push_bind(JobKind::DeliverMessage.as_str())
                    .push_bind(m.id.clone())
                    .push_bind(lease.map_or(m.now, |l| l.expires_at))
                    .push_bind(lease.map(|l| l.lease.clone()))
                    .push_bind(i64::from(lease.is_some()))
                    .push_bind(m.now);
            }));
        });
    }
    deliveries
        .into_iter()
        .filter_map(|(m, lease, job_id)| {
            lease.map(|l| {
                let mut job = l.job(
                    job_id,
                    m.environment_id.clone(),
                    JobKind::DeliverMessage,
                    m.id.clone(),
                );
                job.written = Some(WrittenRow::Message(std::sync::Arc::new(m.as_written())));
                job
            })
        })
        .collect()
}

/// A run the batch moved, as the database reports it.
struct UpdatedRun {
    environment_id: String,
    workflow_key: String,
}

/// Runs `chain`, then moves every run to its step's cursor and status in one statement
/// per chunk (a cancelled run stays cancelled), the first one in the chain's request;
/// returns the runs it changed, by id.
async fn update_runs(
    tx: &mut Tx<'_>,
    chain: Chain,
    steps: &[&(ClaimedJob, StepCommit)],
) -> StoreResult<HashMap<String, UpdatedRun>> {
    const OP: &str = "commit step";
    let rows = chain
        .fetch_all_per_chunk(tx, steps, ROWS_PER_STATEMENT, 8, push_run_update)
        .await
        .map_err(StoreError::db(OP))?;
    rows_by_id(&rows, OP, |row| {
        Ok(UpdatedRun {
            environment_id: get(row, "environment_id", OP)?,
            workflow_key: get(row, "workflow_key", OP)?,
        })
    })
}

/// `UPDATE recipient_runs … RETURNING` for one chunk of steps (8 parameters per step).
/// The values come from a subquery rather than a `WITH`, so the statement can end a chain
/// of CTEs on PostgreSQL.
fn push_run_update(qb: &mut QueryBuilder<'static, Db>, steps: &[&(ClaimedJob, StepCommit)]) {
    qb.push(
        "UPDATE recipient_runs SET step_cursor = v.step_cursor, status = v.status, \
         updated_at = v.updated_at, error_count = recipient_runs.error_count + v.errors, \
         data = COALESCE(v.data, recipient_runs.data), state = COALESCE(v.state, recipient_runs.state), \
         workflow_version = COALESCE(v.workflow_version, recipient_runs.workflow_version) \
         FROM (SELECT column1 AS id, column2 AS step_cursor, column3 AS status, column4 AS updated_at, \
         column5 AS errors, column6 AS data, column7 AS state, column8 AS workflow_version FROM (",
    );
    qb.push_values_padded(steps.iter(), |mut b, step| {
        let s = step.map(|(_, s)| s);
        b.push_bind(s.map(|s| s.run_id.clone()))
            .push_bind(s.map(|s| s.next_cursor))
            .push_bind(s.map(|s| s.finished.unwrap_or(RunStatus::Processing).as_str()))
            .push_bind(s.map(|s| s.now))
            .push_bind(s.map(|s| i64::from(s.error)))
            .push_bind(s.and_then(|s| s.data.as_ref().map(to_json_text)))
            .push_bind(s.and_then(|s| s.state.as_ref().map(to_json_text)))
            .push_bind(s.and_then(|s| s.workflow_version));
    });
    qb.push(
        ") AS t) AS v WHERE recipient_runs.id = v.id AND recipient_runs.status <> 'cancelled' \
         RETURNING recipient_runs.id, recipient_runs.environment_id, recipient_runs.workflow_key",
    );
}

/// The steps that completed their run, with the run as updated (a cancelled run is not).
fn completed_runs<'a>(
    steps: &[&'a (ClaimedJob, StepCommit)],
    updated: &'a HashMap<String, UpdatedRun>,
) -> Vec<(&'a StepCommit, &'a UpdatedRun)> {
    steps
        .iter()
        .filter(|(_, s)| s.finished == Some(RunStatus::Completed))
        .filter_map(|(_, s)| updated.get(&s.run_id).map(|u| (s, u)))
        .collect()
}

/// Does any run of the environment wait on events of `event_type` (only those of
/// `(source workflow, event key)` when given)?
pub(super) struct WaitQuestion<'a> {
    pub environment_id: &'a str,
    pub event_type: &'a str,
    pub source: Option<(&'a str, &'a str)>,
}

impl<'a> WaitQuestion<'a> {
    /// Does any run of the environment wait for a message's event?
    pub fn messages(environment_id: &'a str) -> Self {
        WaitQuestion {
            environment_id,
            event_type: "message",
            source: None,
        }
    }

    /// Does any run of the environment wait for a run of `workflow_key` to complete?
    pub fn completions(environment_id: &'a str, workflow_key: &'a str) -> Self {
        WaitQuestion {
            environment_id,
            event_type: "workflow",
            source: Some((workflow_key, "completed")),
        }
    }
}

/// Answers every question in one statement, in order: whether any open wait matches,
/// expired or not, so an answer errs towards signalling.
pub(super) async fn open_waits(
    tx: &mut Tx<'_>,
    questions: &[WaitQuestion<'_>],
) -> StoreResult<Vec<bool>> {
    const OP: &str = "find open waits";
    if questions.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = QueryBuilder::<Db>::new("");
    for (i, q) in questions.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push(format!(
            "SELECT CAST({i} AS BIGINT) AS question WHERE EXISTS \
             (SELECT 1 FROM waits WHERE environment_id = "
        ));
        qb.push_bind(q.environment_id.to_string());
        qb.push(" AND status = 'open' AND event_type = ");
        qb.push_bind(q.event_type.to_string());
        if let Some((source_key, event_key)) = q.source {
            qb.push(" AND source_key = ");
            qb.push_bind(source_key.to_string());
            qb.push(" AND event_key = ");
            qb.push_bind(event_key.to_string());
        }
        qb.push(")");
    }
    let mut answers = vec![false; questions.len()];
    for row in qb
        .build()
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?
    {
        let question: i64 = get(&row, "question", OP)?;
        if let Some(answer) = usize::try_from(question)
            .ok()
            .and_then(|i| answers.get_mut(i))
        {
            *answer = true;
        }
    }
    Ok(answers)
}
