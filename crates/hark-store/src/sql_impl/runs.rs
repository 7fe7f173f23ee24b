//! Triggers, cancellation and recipient runs.

use super::trigger_batch::{insert_workflow_runs, is_plain, write_plain_triggers};
use super::*;

/// How long a cancel that matched nothing waits for its trigger. Knock warns that a cancel
/// can overtake its trigger; a minute covers a trigger still in flight without letting a
/// stale cancel catch a later, unrelated run with a reused key.
const EARLY_CANCELLATION_WINDOW_MS: Millis = 60_000;

/// Writes one trigger inside `tx`: idempotency key, inline users, the workflow run, one
/// recipient run and one job per recipient. Nothing is committed here; runs it made due
/// (waits on the workflow starting) are noted in `after`.
pub(super) async fn write_trigger(
    tx: &mut Tx<'_>,
    t: &TriggerWrite,
    after: &mut AfterCommit,
) -> StoreResult<Written<TriggerOutcome>> {
    const OP: &str = "create trigger";
    if let Some(claim) = &t.idempotency {
        let existing = sqlx::query(
            "SELECT request_hash, response, created_at FROM idempotency_keys WHERE environment_id = $1 AND key = $2",
        )
        .bind(&t.environment_id)
        .bind(&claim.key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
        if let Some(row) = existing {
            let created_at: i64 = get(&row, "created_at", OP)?;
            if created_at >= claim.not_before {
                let hash: String = get(&row, "request_hash", OP)?;
                if hash != claim.request_hash {
                    return Ok(Written::without_jobs(TriggerOutcome::IdempotencyKeyReused));
                }
                let response: String = get(&row, "response", OP)?;
                return Ok(Written::without_jobs(TriggerOutcome::Replayed(parse_json(
                    &response, OP,
                )?)));
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
        .execute(&mut **tx)
        .await;
        // Zero rows: an unexpired key exists, committed by a concurrent request after our
        // read (PostgreSQL waits for it, then skips the update). Answer from its row.
        let lost_race = inserted.map_err(StoreError::db(OP))?.rows_affected() == 0;
        if lost_race {
            let row = sqlx::query(
                "SELECT request_hash, response FROM idempotency_keys WHERE environment_id = $1 AND key = $2",
            )
            .bind(&t.environment_id)
            .bind(&claim.key)
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
            let hash: String = get(&row, "request_hash", OP)?;
            if hash != claim.request_hash {
                return Ok(Written::without_jobs(TriggerOutcome::IdempotencyKeyReused));
            }
            let response: String = get(&row, "response", OP)?;
            return Ok(Written::without_jobs(TriggerOutcome::Replayed(parse_json(
                &response, OP,
            )?)));
        }
    }
    for (id, props) in &t.inline_users {
        upsert_user_tx(tx, &t.environment_id, id, props, t.now).await?;
    }
    for (collection, id, props) in &t.inline_objects {
        super::objects::upsert_object_tx(tx, &t.environment_id, collection, id, props, t.now)
            .await?;
    }
    for (owner, kind, key, data) in &t.inline_documents {
        super::objects::put_document_tx(tx, &t.environment_id, owner, *kind, key, data, t.now)
            .await?;
    }
    insert_workflow_runs(tx, &[t]).await?;
    let recipients = first_time_recipients(tx, t).await?;
    let mut runs: Vec<(RecipientKey, Value)> = recipients
        .into_iter()
        .map(|id| {
            (
                RecipientKey {
                    collection: None,
                    id,
                },
                t.state.clone(),
            )
        })
        .collect();
    if !t.fan_outs.is_empty() {
        // Recipients named in the trigger are not run again when they are also
        // subscribers.
        let direct: Vec<RecipientKey> = t
            .recipients
            .iter()
            .map(|id| RecipientKey {
                collection: None,
                id: id.clone(),
            })
            .collect();
        mark_seen(tx, &t.workflow_run_id, &direct).await?;
        // Each object named in the trigger runs the workflow itself too, once however
        // often it is named; `fanout_seen` also stops a fan-out that reaches it (as a
        // nested subscriber) from running it again.
        let objects: Vec<RecipientKey> = t
            .fan_outs
            .iter()
            .map(|(collection, id)| RecipientKey {
                collection: Some(collection.clone()),
                id: id.clone(),
            })
            .collect();
        for object in mark_seen(tx, &t.workflow_run_id, &objects).await? {
            runs.push((object, t.state.clone()));
        }
        let template = RunTemplate::of(t);
        for (collection, object_id) in &t.fan_outs {
            insert_fanout(tx, &template, collection, object_id, 1, t.now).await?;
        }
    }
    let leased_jobs = insert_runs(tx, &RunTemplate::of(t), &runs, t.lease.as_ref(), t.now).await?;
    if t.cancellation_key.is_some() {
        apply_early_cancellation(tx, t).await?;
    }
    after.jobs_made_due |= signal_trigger_started(tx, t).await?;
    Ok(Written {
        outcome: TriggerOutcome::Accepted,
        leased_jobs,
    })
}

/// The trigger's runs share its environment, workflow and cancellation key, which
/// `recipient_runs_cancel` leads to, as `recipient_runs_workflow_run` leads to its
/// workflow run: either finds them without reading any other run.
pub(crate) const APPLY_EARLY_CANCELLATION_SQL: &str =
    "UPDATE recipient_runs SET status = 'cancelled' WHERE environment_id = $2 \
     AND workflow_key = $3 AND cancellation_key = $4 AND workflow_run_id = $1 AND EXISTS \
     (SELECT 1 FROM early_cancellations c WHERE c.environment_id = $2 AND c.workflow_key = $3 \
     AND c.cancellation_key = $4 AND c.expires_at > $5 \
     AND (c.recipient_id = '' OR c.recipient_id = recipient_runs.recipient_id))";

/// Which of a waiting recipient's runs `workflow.started` comes from: those of the
/// trigger (`$4`), reached from the waits (normally none) through the trigger's runs
/// (`recipient_runs_workflow_run`).
pub(crate) const STARTED_BY_TRIGGER: &str = "r.workflow_run_id = $4";

/// Cancels the trigger's runs that a cancel, arriving before the trigger, still applies to.
pub(super) async fn apply_early_cancellation(tx: &mut Tx<'_>, t: &TriggerWrite) -> StoreResult<()> {
    let Some(key) = &t.cancellation_key else {
        return Ok(());
    };
    sqlx::query(APPLY_EARLY_CANCELLATION_SQL)
        .bind(&t.workflow_run_id)
        .bind(&t.environment_id)
        .bind(&t.workflow_key)
        .bind(key)
        .bind(t.now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("create trigger"))?;
    Ok(())
}

/// Hands `workflow.started` to runs waiting for this workflow; whether a waiting run was
/// made due.
pub(super) async fn signal_trigger_started(tx: &mut Tx<'_>, t: &TriggerWrite) -> StoreResult<bool> {
    signal_workflow_waits(
        tx,
        &WorkflowSignal {
            environment_id: &t.environment_id,
            workflow_key: &t.workflow_key,
            event_key: "started",
            payload: serde_json::json!({
                "workflow_key": t.workflow_key,
                "workflow_run_id": t.workflow_run_id,
                "status": "started",
                "tenant_id": t.tenant,
            }),
            runs: STARTED_BY_TRIGGER,
            selector: &t.workflow_run_id,
        },
        t.now,
    )
    .await
}

/// What every run of one trigger shares; fan-outs keep it to create runs later.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct RunTemplate {
    pub environment_id: String,
    pub workflow_run_id: String,
    pub workflow_key: String,
    pub workflow_version: i64,
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub data: Value,
    pub cancellation_key: Option<String>,
    pub state: Value,
}

impl RunTemplate {
    pub(super) fn of(t: &TriggerWrite) -> Self {
        Self {
            environment_id: t.environment_id.clone(),
            workflow_run_id: t.workflow_run_id.clone(),
            workflow_key: t.workflow_key.clone(),
            workflow_version: t.workflow_version,
            actor: t.actor.clone(),
            tenant: t.tenant.clone(),
            data: t.data.clone(),
            cancellation_key: t.cancellation_key.clone(),
            state: t.state.clone(),
        }
    }
}

/// Inserts one queued run and its job per `(recipient, initial state)` of one trigger; the
/// jobs are leased to the writer when `lease` is given, and returned as it holds them.
pub(super) async fn insert_runs(
    tx: &mut Tx<'_>,
    t: &RunTemplate,
    runs: &[(RecipientKey, Value)],
    lease: Option<&JobLease>,
    now: Millis,
) -> StoreResult<Vec<ClaimedJob>> {
    let data = to_json_text(&t.data);
    let state_texts: Vec<String> = runs.iter().map(|(_, state)| to_json_text(state)).collect();
    let rows: Vec<RunRow<'_>> = runs
        .iter()
        .zip(&state_texts)
        .map(|((recipient, state), state_text)| RunRow {
            template: t,
            data: &data,
            recipient: recipient.clone(),
            state,
            state_text,
            lease,
            now,
        })
        .collect();
    let mut leased = Vec::new();
    Chain::execute_one(tx, "insert runs", |chain| {
        leased = push_run_rows(chain, &rows);
    })
    .await?;
    Ok(leased.into_iter().flatten().collect())
}

/// One run to insert.
pub(super) struct RunRow<'a> {
    pub template: &'a RunTemplate,
    /// The template's `data` as JSON text, serialised once per trigger.
    pub data: &'a str,
    pub recipient: RecipientKey,
    /// The run's initial state, and as JSON text.
    pub state: &'a Value,
    pub state_text: &'a str,
    /// The run's job is written leased to the writer.
    pub lease: Option<&'a JobLease>,
    pub now: Millis,
}

/// Adds to `chain` one queued run and its job per row, in multi-row statements of at most
/// 500 rows (17 parameters per run row, 8 per job row). Returns, row by row, the job as
/// its writer holds it when the row asked for a lease.
pub(super) fn push_run_rows(chain: &mut Chain, rows: &[RunRow<'_>]) -> Vec<Option<ClaimedJob>> {
    let run_ids: Vec<String> = rows.iter().map(|_| new_id()).collect();
    let job_ids: Vec<String> = rows.iter().map(|_| new_id()).collect();
    let leased = rows
        .iter()
        .zip(run_ids.iter().zip(&job_ids))
        .map(|(row, (run_id, job_id))| {
            row.lease.map(|lease| {
                let mut job = lease.job(
                    job_id.clone(),
                    row.template.environment_id.clone(),
                    JobKind::AdvanceRun,
                    run_id.clone(),
                );
                job.written =
                    written_run(row, run_id).map(|run| WrittenRow::Run(std::sync::Arc::new(run)));
                job
            })
        })
        .collect();
    let rows: Vec<(&RunRow<'_>, (&String, &String))> =
        rows.iter().zip(run_ids.iter().zip(&job_ids)).collect();
    for chunk in rows.chunks(500) {
        chain.push(chunk.len() * 17, |qb| {
            qb.push(format!("INSERT INTO recipient_runs ({RUN_COLUMNS}) "));
            qb.push_rows(Rows::of(chunk.iter(), |b, (row, (run_id, _))| {
                let t = row.template;
                b.push_bind((*run_id).clone())
                    .push_bind(t.environment_id.clone())
                    .push_bind(t.workflow_run_id.clone())
                    .push_bind(t.workflow_key.clone())
                    .push_bind(t.workflow_version)
                    .push_bind(row.recipient.id.clone())
                    .push_bind(t.actor.clone())
                    .push_bind(t.tenant.clone())
                    .push_bind(row.data.to_string())
                    .push_bind(t.cancellation_key.clone())
                    .push_bind(RunStatus::Queued.as_str())
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind(row.now)
                    .push_bind(row.now)
                    .push_bind(row.state_text.to_string())
                    .push_bind(row.recipient.collection.clone().unwrap_or_default());
            }));
        });
        chain.push(chunk.len() * 8, |qb| {
            qb.push(
                "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) ",
            );
            qb.push_rows(Rows::of(chunk.iter(), |b, (row, (run_id, job_id))| {
                b.push_bind((*job_id).clone())
                    .push_bind(row.template.environment_id.clone())
                    .push_bind(JobKind::AdvanceRun.as_str())
                    .push_bind((*run_id).clone())
                    .push_bind(row.lease.map_or(row.now, |l| l.expires_at))
                    .push_bind(row.lease.map(|l| l.lease.clone()))
                    .push_bind(i64::from(row.lease.is_some()))
                    .push_bind(row.now);
            }));
        });
    }
    leased
}

/// The run a row writes, as a read of it right after the commit returns it, for the
/// worker the job is handed to. None for a run a cancellation key could cancel in the
/// same commit (a cancel that arrived first): the worker reads those, to see the cancel
/// before a step with effects outside the database, such as a fetch.
fn written_run(row: &RunRow<'_>, run_id: &str) -> Option<RecipientRun> {
    let t = row.template;
    if t.cancellation_key.is_some() {
        return None;
    }
    Some(RecipientRun {
        id: run_id.to_string(),
        environment_id: t.environment_id.clone(),
        workflow_run_id: t.workflow_run_id.clone(),
        workflow_key: t.workflow_key.clone(),
        workflow_version: t.workflow_version,
        recipient_id: row.recipient.id.clone(),
        recipient_collection: row.recipient.collection.clone(),
        actor: t.actor.clone(),
        tenant: t.tenant.clone(),
        data: t.data.clone(),
        cancellation_key: None,
        status: RunStatus::Queued,
        step_cursor: 0,
        state: row.state.clone(),
        error_count: 0,
        inserted_at: row.now,
        updated_at: row.now,
    })
}

/// Records recipients as reached by this trigger; returns those not reached before.
pub(super) async fn mark_seen(
    tx: &mut Tx<'_>,
    workflow_run_id: &str,
    recipients: &[RecipientKey],
) -> StoreResult<Vec<RecipientKey>> {
    let mut fresh = Vec::new();
    for chunk in recipients.chunks(300) {
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO fanout_seen (workflow_run_id, recipient_collection, recipient_id) ",
        );
        qb.push_rows(Rows::of(chunk.iter(), |b, r| {
            b.push_bind(workflow_run_id.to_string())
                .push_bind(r.collection.clone().unwrap_or_default())
                .push_bind(r.id.clone());
        }));
        qb.push(" ON CONFLICT DO NOTHING RETURNING recipient_collection, recipient_id");
        let rows = qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db("mark recipients seen"))?;
        for row in &rows {
            let collection: String = get(row, "recipient_collection", "mark recipients seen")?;
            fresh.push(RecipientKey {
                collection: Some(collection).filter(|c| !c.is_empty()),
                id: get(row, "recipient_id", "mark recipients seen")?,
            });
        }
    }
    Ok(fresh)
}

/// Starts streaming an object's subscribers into runs of this trigger.
pub(super) async fn insert_fanout(
    tx: &mut Tx<'_>,
    t: &RunTemplate,
    collection: &str,
    object_id: &str,
    depth: i64,
    now: Millis,
) -> StoreResult<()> {
    const OP: &str = "start fan-out";
    let id = new_id();
    let trigger = serde_json::to_string(t).map_err(|e| StoreError::Corrupt {
        operation: OP,
        detail: e.to_string(),
    })?;
    sqlx::query(
        "INSERT INTO fanouts (id, environment_id, workflow_run_id, collection, object_id, depth, \
         after_collection, after_id, trigger, created_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8)",
    )
    .bind(&id)
    .bind(&t.environment_id)
    .bind(&t.workflow_run_id)
    .bind(collection)
    .bind(object_id)
    .bind(depth)
    .bind(trigger)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    sqlx::query(
        "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, 0, $5)",
    )
    .bind(new_id())
    .bind(&t.environment_id)
    .bind(JobKind::FanOut.as_str())
    .bind(&id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    Ok(())
}

/// The trigger's recipients that may run it: all of them, or for once-per-recipient
/// workflows those that never ran it (claimed here, so concurrent triggers can't both pass).
async fn first_time_recipients(tx: &mut Tx<'_>, t: &TriggerWrite) -> StoreResult<Vec<String>> {
    let tenant = match t.frequency {
        TriggerFrequency::EveryTrigger => return Ok(t.recipients.clone()),
        TriggerFrequency::OncePerRecipient => String::new(),
        TriggerFrequency::OncePerRecipientPerTenant => t.tenant.clone().unwrap_or_default(),
    };
    let mut allowed = std::collections::HashSet::with_capacity(t.recipients.len());
    for chunk in t.recipients.chunks(200) {
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO trigger_once (environment_id, workflow_key, recipient_id, tenant) ",
        );
        qb.push_rows(Rows::of(chunk.iter(), |b, recipient| {
            b.push_bind(t.environment_id.clone())
                .push_bind(t.workflow_key.clone())
                .push_bind(recipient.clone())
                .push_bind(tenant.clone());
        }));
        qb.push(" ON CONFLICT DO NOTHING RETURNING recipient_id");
        let rows = qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db("claim once-per-recipient"))?;
        for row in &rows {
            allowed.insert(get::<String>(
                row,
                "recipient_id",
                "claim once-per-recipient",
            )?);
        }
    }
    // Keep the trigger's order.
    Ok(t.recipients
        .iter()
        .filter(|r| allowed.contains(r.as_str()))
        .cloned()
        .collect())
}

/// Writes the triggers a batch could not write together, each in a savepoint of its own
/// so one bad trigger leaves the others in. `written_together` gives, for a trigger
/// already in `tx`, the jobs it leased.
async fn write_triggers_one_by_one(
    tx: &mut Tx<'_>,
    triggers: &[TriggerWrite],
    mut written_together: impl FnMut(&TriggerWrite) -> Option<Vec<ClaimedJob>>,
    after: &mut AfterCommit,
) -> StoreResult<Vec<StoreResult<Written<TriggerOutcome>>>> {
    let mut outcomes = Vec::with_capacity(triggers.len());
    for t in triggers {
        if let Some(leased_jobs) = written_together(t) {
            outcomes.push(Ok(Written {
                outcome: TriggerOutcome::Accepted,
                leased_jobs,
            }));
            continue;
        }
        let mut savepoint = sqlx::Acquire::begin(&mut **tx)
            .await
            .map_err(StoreError::db("savepoint"))?;
        let mut trigger_after = AfterCommit::default();
        let outcome = write_trigger(&mut savepoint, t, &mut trigger_after).await;
        end_savepoint(savepoint, outcome.is_ok()).await?;
        if outcome.is_ok() {
            after.absorb(trigger_after);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_triggers_with_jobs(
        &self,
        triggers: &[TriggerWrite],
    ) -> StoreResult<Vec<StoreResult<Written<TriggerOutcome>>>> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut after = AfterCommit::default();
        let plain: Vec<&TriggerWrite> = triggers.iter().filter(|t| is_plain(t)).collect();
        let outcomes = if let ([single], true) = (triggers, plain.is_empty()) {
            // Alone in the transaction, it needs no savepoint.
            vec![write_trigger(&mut tx, single, &mut after).await]
        } else {
            // Written straight into the transaction, without a savepoint of their own
            // (SQLite copies every page a savepoint touches): should that fail, the whole
            // transaction starts again and every trigger goes one by one. Even one plain
            // trigger goes this way: it takes fewer statements than the general one.
            let mut together = None;
            if !plain.is_empty() {
                match write_plain_triggers(&mut tx, &plain, &mut after).await {
                    Ok(jobs) => together = Some(std::collections::VecDeque::from(jobs)),
                    Err(_) => {
                        after = AfterCommit::default();
                        tx.rollback().await.map_err(StoreError::db("roll back"))?;
                        tx = conn.begin().await.map_err(StoreError::db("begin"))?;
                    }
                }
            }
            write_triggers_one_by_one(
                &mut tx,
                triggers,
                |t| {
                    together
                        .as_mut()
                        .filter(|_| is_plain(t))
                        .map(|jobs| jobs.pop_front().unwrap_or_default())
                },
                &mut after,
            )
            .await?
        };
        if outcomes.iter().any(|o| o.is_ok()) {
            tx.commit()
                .await
                .map_err(StoreError::db("commit triggers"))?;
            self.announce(after);
        }
        Ok(outcomes)
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
        if recipients.is_some_and(|ids| ids.is_empty()) {
            return Ok(0);
        }
        let matching = |qb: &mut QueryBuilder<'_, Db>| {
            qb.push(" WHERE environment_id = ");
            qb.push_bind(environment_id.to_string());
            qb.push(" AND workflow_key = ");
            qb.push_bind(workflow_key.to_string());
            qb.push(" AND cancellation_key = ");
            qb.push_bind(cancellation_key.to_string());
            qb.push(" AND status IN ('queued', 'processing', 'paused')");
            if let Some(ids) = recipients {
                // Named recipients are users: an object sharing an id keeps its run.
                qb.push(" AND recipient_collection = '' AND recipient_id");
                qb.push_one_of(ids.iter().cloned());
            }
        };
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        // The runs' jobs go first: a worker's step commit locks its job, then its run, so
        // taking them in the same order cannot deadlock with one (PostgreSQL); a worker
        // that commits after this finds its job gone and writes nothing.
        let mut qb = QueryBuilder::<Db>::new(
            "DELETE FROM jobs WHERE kind = 'advance_run' AND ref_id IN (SELECT id FROM recipient_runs",
        );
        matching(&mut qb);
        qb.push(")");
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        let mut qb = QueryBuilder::<Db>::new(
            "UPDATE recipient_runs SET status = 'cancelled', updated_at = ",
        );
        qb.push_bind(now);
        matching(&mut qb);
        qb.push(" RETURNING id");
        let rows = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        for row in &rows {
            let run_id: String = get(row, "id", OP)?;
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
            // A cancelled activity leaves its open batch; the batch itself stays open.
            for sql in [
                "DELETE FROM batch_items WHERE run_id = $1",
                "UPDATE waits SET status = 'cancelled' WHERE run_id = $1 AND status = 'open'",
            ] {
                sqlx::query(sql)
                    .bind(&run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
            }
        }
        if rows.is_empty() {
            let targets: Vec<String> = match recipients {
                Some(ids) => ids.to_vec(),
                None => vec![String::new()],
            };
            for recipient in targets {
                sqlx::query(
                    "INSERT INTO early_cancellations (environment_id, workflow_key, cancellation_key, recipient_id, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (environment_id, workflow_key, cancellation_key, recipient_id) \
                     DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(environment_id)
                .bind(workflow_key)
                .bind(cancellation_key)
                .bind(recipient)
                .bind(now + EARLY_CANCELLATION_WINDOW_MS)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            }
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
        .fetch_optional(&mut *self.reader.acquire().await?)
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
        let mut qb =
            QueryBuilder::<Db>::new(format!("SELECT {RUN_COLUMNS} FROM recipient_runs WHERE "));
        push_runs_of_environment(&mut qb, environment_id, filter.workflow_run_id.as_deref());
        push_recipient(&mut qb, &filter.recipient_id, &filter.recipient_collection);
        for (column, value) in [
            ("workflow_key", &filter.workflow_key),
            ("tenant", &filter.tenant),
        ] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = "));
                qb.push_bind(v.clone());
            }
        }
        match filter.has_errors {
            Some(true) => {
                qb.push(" AND error_count > 0");
            }
            Some(false) => {
                qb.push(" AND error_count = 0");
            }
            None => {}
        }
        push_inserted_at_bounds(
            &mut qb,
            [
                (">=", filter.inserted_at_gte),
                ("<=", filter.inserted_at_lte),
            ],
        );
        if !filter.status.is_empty() {
            qb.push(" AND status");
            qb.push_one_of(filter.status.iter().cloned());
        }
        let Some(backwards) = push_id_page(&mut qb, page, size) else {
            return Ok(empty_page());
        };
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
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
        .fetch_all(&mut *self.reader.acquire().await?)
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

/// The runs a listing starts from: the environment's, or one trigger's (see
/// [`push_trigger_run_ids`]). The trigger's are picked in a subquery, so the listing
/// itself has no environment term: without statistics SQLite takes
/// `recipient_runs_env` as selective and walked the environment's runs in id order.
pub(crate) fn push_runs_of_environment(
    qb: &mut QueryBuilder<'_, Db>,
    environment_id: &str,
    workflow_run_id: Option<&str>,
) {
    match workflow_run_id {
        Some(workflow_run_id) => {
            qb.push("id IN (");
            push_trigger_run_ids(qb, environment_id, workflow_run_id);
            qb.push(")");
        }
        None => {
            qb.push("environment_id = ");
            qb.push_bind(environment_id.to_string());
        }
    }
}

/// `SELECT` of the ids of one trigger's runs in the environment, through
/// `recipient_runs_workflow_run`.
pub(crate) fn push_trigger_run_ids(
    qb: &mut QueryBuilder<'_, Db>,
    environment_id: &str,
    workflow_run_id: &str,
) {
    qb.push("SELECT id FROM recipient_runs WHERE environment_id = ");
    qb.push_bind(environment_id.to_string());
    qb.push(" AND workflow_run_id = ");
    qb.push_bind(workflow_run_id.to_string());
}
