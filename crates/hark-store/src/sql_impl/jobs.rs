//! The job table: claiming, fenced step and delivery commits.

use super::delivery_batch::{plain_deliveries, write_delivery_rows, write_plain_deliveries};
use super::step_batch::{
    insert_delivery_jobs, insert_message_events, insert_messages, is_plain, note_feed_messages,
    write_plain_steps,
};
use std::collections::VecDeque;

use super::*;

/// Writes one step's outcome inside `tx` if `job` still holds its lease. What to announce
/// after the commit (a new in-app message, runs made due) goes into `after`; on
/// PostgreSQL the message's `NOTIFY` is also sent, on commit.
async fn write_step(
    tx: &mut Tx<'_>,
    job: &ClaimedJob,
    step: &StepCommit,
    after: &mut AfterCommit,
) -> StoreResult<Written<bool>> {
    const OP: &str = "commit step";
    if !hold_lease(tx, job).await? {
        return Ok(Written::without_jobs(false));
    }
    let mut leased_jobs = Vec::new();
    if let Some(m) = &step.message {
        // Architecture invariant: the unique key makes a replayed step a no-op.
        if insert_messages(tx, &[m]).await?.contains(&m.id) {
            let created = [(m, step)];
            note_feed_messages(&created, &mut after.feed);
            after.jobs_made_due |= insert_message_events(tx, &created).await?;
            leased_jobs = insert_delivery_jobs(tx, &created).await?;
        }
    }
    insert_run_events(tx, &step.run_id, &step.events).await?;
    for trigger in &step.triggers {
        super::runs::write_trigger(tx, trigger, after).await?;
    }
    if let Some(w) = &step.new_wait {
        sqlx::query(
            "INSERT INTO waits (id, environment_id, run_id, recipient_id, event_type, event_key, \
             source_key, status, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9)",
        )
        .bind(&w.id)
        .bind(&w.environment_id)
        .bind(&step.run_id)
        .bind(&w.recipient_id)
        .bind(&w.event_type)
        .bind(&w.event_key)
        .bind(&w.source_key)
        .bind(w.expires_at)
        .bind(step.now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    }
    if let Some((wait_id, status)) = &step.close_wait {
        sqlx::query("UPDATE waits SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(wait_id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
        sqlx::query("DELETE FROM wait_events WHERE wait_id = $1")
            .bind(wait_id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
    }
    for id in &step.drop_wait_events {
        sqlx::query("DELETE FROM wait_events WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
    }
    let status = match (step.finished, step.resume_at) {
        (Some(finished), _) => finished,
        (None, Some(_)) => RunStatus::Paused,
        (None, None) => RunStatus::Processing,
    };
    let updated = sqlx::query(
        "UPDATE recipient_runs SET step_cursor = $1, status = $2, updated_at = $3, \
         error_count = error_count + $4, data = COALESCE($6, data), state = COALESCE($7, state), \
         workflow_version = COALESCE($8, workflow_version) \
         WHERE id = $5 AND status <> 'cancelled' \
         RETURNING environment_id, workflow_key, workflow_run_id, tenant",
    )
    .bind(step.next_cursor)
    .bind(status.as_str())
    .bind(step.now)
    .bind(if step.error { 1_i64 } else { 0_i64 })
    .bind(&step.run_id)
    .bind(step.data.as_ref().map(to_json_text))
    .bind(step.state.as_ref().map(to_json_text))
    .bind(step.workflow_version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    if step.finished.is_some() {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&job.id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
    } else if let Some(resume_at) = step.resume_at {
        // A wait that already has candidates (recorded while this worker held the job)
        // is re-checked at once instead of sleeping until it expires.
        sqlx::query(
            "UPDATE jobs SET lease = NULL, run_at = CASE WHEN EXISTS (SELECT 1 FROM wait_events e \
             JOIN waits w ON e.wait_id = w.id WHERE w.run_id = $3 AND w.status = 'open') \
             THEN $4 ELSE $1 END WHERE id = $2",
        )
        .bind(resume_at)
        .bind(&job.id)
        .bind(&step.run_id)
        .bind(step.now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    }
    if let (Some(RunStatus::Completed), Some(row)) = (step.finished, updated) {
        after.jobs_made_due |= signal_completed_from_row(tx, &row, &step.run_id, step.now).await?;
    }
    Ok(Written {
        outcome: true,
        leased_jobs,
    })
}

/// `workflow.completed` for runs waiting on the workflow of `run_id`, from the run's row
/// (`environment_id`, `workflow_key`, `workflow_run_id`, `tenant`); whether a waiting
/// run was made due.
async fn signal_completed_from_row(
    tx: &mut Tx<'_>,
    row: &DbRow,
    run_id: &str,
    now: Millis,
) -> StoreResult<bool> {
    const OP: &str = "signal run completed";
    let environment_id: String = get(row, "environment_id", OP)?;
    let workflow_key: String = get(row, "workflow_key", OP)?;
    let workflow_run_id: String = get(row, "workflow_run_id", OP)?;
    let tenant: Option<String> = get(row, "tenant", OP)?;
    signal_workflow_waits(
        tx,
        &WorkflowSignal {
            environment_id: &environment_id,
            workflow_key: &workflow_key,
            event_key: "completed",
            payload: serde_json::json!({
                "workflow_key": workflow_key,
                "workflow_run_id": workflow_run_id,
                "status": "completed",
                "tenant_id": tenant,
            }),
            runs: "r.id = $4",
            selector: run_id,
        },
        now,
    )
    .await
}

/// `workflow.completed` for runs waiting on the workflow of `run_id`; whether a waiting
/// run was made due.
pub(super) async fn signal_run_completed(
    tx: &mut Tx<'_>,
    run_id: &str,
    now: Millis,
) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT environment_id, workflow_key, workflow_run_id, tenant FROM recipient_runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db("signal run completed"))?;
    match row {
        Some(row) => signal_completed_from_row(tx, &row, run_id, now).await,
        None => Ok(false),
    }
}

/// The steps of a group commit that were not written together (`written_together` holds,
/// in order, whether each plain step's job held its lease, when they were), each in its
/// own savepoint so that a failing step is rolled back alone.
async fn write_steps_one_by_one(
    tx: &mut Tx<'_>,
    steps: &[(ClaimedJob, StepCommit)],
    mut written_together: Option<VecDeque<Written<bool>>>,
    after: &mut AfterCommit,
) -> StoreResult<Vec<StoreResult<Written<bool>>>> {
    let mut outcomes = Vec::with_capacity(steps.len());
    for (job, step) in steps {
        if let Some(written) = written_together.as_mut().filter(|_| is_plain(step)) {
            outcomes.push(Ok(written
                .pop_front()
                .unwrap_or_else(|| Written::without_jobs(false))));
            continue;
        }
        let mut savepoint = sqlx::Acquire::begin(&mut **tx)
            .await
            .map_err(StoreError::db("savepoint"))?;
        let mut step_after = AfterCommit::default();
        let outcome = write_step(&mut savepoint, job, step, &mut step_after).await;
        end_savepoint(savepoint, outcome.is_ok()).await?;
        // A step rolled back to its savepoint created no message and signalled nothing
        // (its NOTIFY is discarded with it).
        if outcome.is_ok() {
            after.absorb(step_after);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The writer connection with a durability setting relaxed for one statement. Unless
/// [`RelaxedWriter::restore`] succeeds, the connection is closed instead of being handed
/// on, so no later commit can run with the relaxed setting.
struct RelaxedWriter<'w> {
    writer: &'w Writer,
    connection: Option<WriterConn<'w>>,
}

impl<'w> RelaxedWriter<'w> {
    async fn acquire(writer: &'w Writer, relax: &str) -> StoreResult<Self> {
        const OP: &str = "relax writer durability";
        let connection = writer.conn().await.map_err(StoreError::db(OP))?;
        let mut relaxed = RelaxedWriter {
            writer,
            connection: Some(connection),
        };
        sqlx::query(relax)
            .execute(relaxed.connection()?)
            .await
            .map_err(StoreError::db(OP))?;
        Ok(relaxed)
    }

    fn connection(&mut self) -> StoreResult<&mut <Db as sqlx::Database>::Connection> {
        self.connection
            .as_deref_mut()
            .ok_or_else(|| StoreError::Unavailable("the writer connection was released".into()))
    }

    async fn restore(mut self, restore: &str) -> StoreResult<()> {
        sqlx::query(restore)
            .execute(self.connection()?)
            .await
            .map_err(StoreError::db("restore writer durability"))?;
        // Restored: handed on as usual.
        self.connection.take();
        Ok(())
    }
}

impl Drop for RelaxedWriter<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.writer.discard(connection);
        }
    }
}

/// Writes one delivery attempt's outcome inside `tx` if `job` still holds its lease.
async fn write_delivery(
    tx: &mut Tx<'_>,
    job: &ClaimedJob,
    d: &DeliveryCommit,
    after: &mut AfterCommit,
) -> StoreResult<bool> {
    const OP: &str = "commit delivery";
    if !hold_lease(tx, job).await? {
        return Ok(false);
    }
    after.jobs_made_due |= write_delivery_rows(tx, &[d]).await?;
    match d.retry_at {
        Some(at) => {
            sqlx::query("UPDATE jobs SET run_at = $1, lease = NULL WHERE id = $2")
                .bind(at)
                .bind(&job.id)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        None => {
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(&job.id)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
    }
    Ok(true)
}

/// The deliveries of a group commit that were not written together (`written_together`
/// holds, in order, whether each one of `together` held its lease, when they were), each
/// in its own savepoint so that a failing one is rolled back alone.
async fn write_deliveries_one_by_one(
    tx: &mut Tx<'_>,
    deliveries: &[(ClaimedJob, DeliveryCommit)],
    together: &std::collections::HashSet<usize>,
    mut written_together: Option<VecDeque<bool>>,
    after: &mut AfterCommit,
) -> StoreResult<Vec<StoreResult<bool>>> {
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for (i, (job, d)) in deliveries.iter().enumerate() {
        if let Some(held) = written_together.as_mut().filter(|_| together.contains(&i)) {
            outcomes.push(Ok(held.pop_front().unwrap_or(false)));
            continue;
        }
        let mut savepoint = sqlx::Acquire::begin(&mut **tx)
            .await
            .map_err(StoreError::db("savepoint"))?;
        let mut delivery_after = AfterCommit::default();
        let outcome = write_delivery(&mut savepoint, job, d, &mut delivery_after).await;
        end_savepoint(savepoint, outcome.is_ok()).await?;
        if outcome.is_ok() {
            after.absorb(delivery_after);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
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
        let claim = sqlx::query(CLAIM_JOBS_SQL)
            .bind(&lease)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit);
        let rows = match CLAIM_WITHOUT_FSYNC {
            (relax, Some(restore)) => {
                let mut writer = RelaxedWriter::acquire(&self.writer, relax).await?;
                let rows = claim.fetch_all(writer.connection()?).await;
                writer.restore(restore).await?;
                rows.map_err(StoreError::db(OP))?
            }
            (relax, None) => {
                let mut conn = self.writer.conn().await.map_err(StoreError::db(OP))?;
                let mut tx = conn.begin().await.map_err(StoreError::db(OP))?;
                sqlx::query(relax)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
                let rows = claim
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
                tx.commit().await.map_err(StoreError::db(OP))?;
                rows
            }
        };
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
                    written: None,
                })
            })
            .collect()
    }

    async fn load_runs_for_jobs(&self, run_ids: &[String]) -> StoreResult<Vec<RecipientRun>> {
        self.read_by_ids(
            &format!("SELECT {RUN_COLUMNS} FROM recipient_runs WHERE "),
            None,
            run_ids,
            run_from_row,
            "load runs for jobs",
        )
        .await
    }

    async fn load_run_for_job(&self, run_id: &str) -> StoreResult<Option<RecipientRun>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recipient_runs WHERE id = $1"
        ))
        .bind(run_id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("load run for job"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn commit_steps_with_jobs(
        &self,
        steps: &[(ClaimedJob, StepCommit)],
    ) -> StoreResult<Vec<StoreResult<Written<bool>>>> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut after = AfterCommit::default();
        let plain: Vec<&(ClaimedJob, StepCommit)> =
            steps.iter().filter(|(_, s)| is_plain(s)).collect();
        let outcomes = if let ([(job, step)], true) = (steps, plain.is_empty()) {
            // Alone in the transaction, it needs no savepoint.
            vec![write_step(&mut tx, job, step, &mut after).await]
        } else {
            let mut together = None;
            if !plain.is_empty() {
                // Straight into the transaction, without a savepoint (SQLite copies every
                // page a savepoint touches): should it fail, the transaction starts again
                // and every step goes one by one. Even one plain step goes this way: it
                // takes fewer statements than the general one.
                match write_plain_steps(&mut tx, &plain, &mut after).await {
                    Ok(held) => together = Some(held.into()),
                    Err(_) => {
                        after = AfterCommit::default();
                        tx.rollback().await.map_err(StoreError::db("roll back"))?;
                        tx = conn.begin().await.map_err(StoreError::db("begin"))?;
                    }
                }
            }
            write_steps_one_by_one(&mut tx, steps, together, &mut after).await?
        };
        if outcomes.iter().any(|o| o.is_ok()) {
            tx.commit().await.map_err(StoreError::db("commit steps"))?;
            self.announce(after);
        }
        Ok(outcomes)
    }

    async fn commit_deliveries(
        &self,
        deliveries: &[(ClaimedJob, DeliveryCommit)],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut after = AfterCommit::default();
        let plain = plain_deliveries(deliveries);
        let outcomes = if let ([(job, d)], true) = (deliveries, plain.is_empty()) {
            // Alone in the transaction, it needs no savepoint.
            vec![write_delivery(&mut tx, job, d, &mut after).await]
        } else {
            let mut together = None;
            // Even one plain delivery: fewer statements than the general path.
            if !plain.is_empty() {
                // In the batch's order, which the answers keep.
                let batch: Vec<&(ClaimedJob, DeliveryCommit)> = deliveries
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| plain.contains(i))
                    .map(|(_, d)| d)
                    .collect();
                // As for steps: no savepoint; on failure, again one by one.
                match write_plain_deliveries(&mut tx, &batch, &mut after).await {
                    Ok(held) => together = Some(held.into()),
                    Err(_) => {
                        after = AfterCommit::default();
                        tx.rollback().await.map_err(StoreError::db("roll back"))?;
                        tx = conn.begin().await.map_err(StoreError::db("begin"))?;
                    }
                }
            }
            write_deliveries_one_by_one(&mut tx, deliveries, &plain, together, &mut after).await?
        };
        if outcomes.iter().any(|o| matches!(o, Ok(true))) {
            tx.commit()
                .await
                .map_err(StoreError::db("commit deliveries"))?;
            self.announce(after);
        }
        Ok(outcomes)
    }

    async fn complete_job(&self, job: &ClaimedJob) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease = $2")
            .bind(&job.id)
            .bind(&job.lease)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("complete job"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_messages_for_jobs(
        &self,
        message_ids: &[String],
    ) -> StoreResult<Vec<MessageRecord>> {
        self.read_by_ids(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE "),
            None,
            message_ids,
            message_from_row,
            "load messages for jobs",
        )
        .await
    }

    async fn load_message_for_job(&self, message_id: &str) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        ))
        .bind(message_id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("load message for job"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn pending_job_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs")
            .fetch_one(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("pending job count"))?;
        get(&row, "n", "pending job count")
    }

    async fn upcoming_due_times(&self, now: Millis, limit: i64) -> StoreResult<Vec<Millis>> {
        // Along `jobs_due`, from `now` on: as many index entries as jobs due before the
        // last instant returned.
        sqlx::query_scalar(
            "SELECT DISTINCT run_at FROM jobs WHERE run_at > $1 ORDER BY run_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("upcoming due times"))
    }

    async fn job_queue_stats(&self, now: Millis) -> StoreResult<JobQueueStats> {
        const OP: &str = "job queue stats";
        // A leased job's `run_at` is its lease expiry, so claimed jobs are not "due".
        let row =
            sqlx::query("SELECT COUNT(*) AS n, MIN(run_at) AS oldest FROM jobs WHERE run_at <= $1")
                .bind(now)
                .fetch_one(&mut *self.reader.acquire().await?)
                .await
                .map_err(StoreError::db(OP))?;
        Ok(JobQueueStats {
            due: get(&row, "n", OP)?,
            oldest_due_at: get(&row, "oldest", OP)?,
        })
    }
}
