//! The job table: claiming, fenced step and delivery commits.

use super::*;

/// Writes one step's outcome inside `tx` if `job` still holds its lease.
async fn write_step(tx: &mut Tx<'_>, job: &ClaimedJob, step: &StepCommit) -> StoreResult<bool> {
    const OP: &str = "commit step";
    if !hold_lease(tx, job).await? {
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
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
        if created.rows_affected() == 1 {
            insert_message_event(
                tx,
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
                .execute(&mut **tx)
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
        .execute(&mut **tx)
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
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    if step.finished.is_some() {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&job.id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
    }
    Ok(true)
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

    async fn load_run_for_job(&self, run_id: &str) -> StoreResult<Option<RecipientRun>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recipient_runs WHERE id = $1"
        ))
        .bind(run_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::db("load run for job"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn commit_steps(
        &self,
        steps: &[(ClaimedJob, StepCommit)],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let mut outcomes = Vec::with_capacity(steps.len());
        if let [(job, step)] = steps {
            outcomes.push(write_step(&mut tx, job, step).await);
        } else {
            for (job, step) in steps {
                let mut savepoint = sqlx::Acquire::begin(&mut tx)
                    .await
                    .map_err(StoreError::db("savepoint"))?;
                let outcome = write_step(&mut savepoint, job, step).await;
                end_savepoint(savepoint, outcome.is_ok()).await?;
                outcomes.push(outcome);
            }
        }
        if outcomes.iter().any(|o| o.is_ok()) {
            tx.commit().await.map_err(StoreError::db("commit steps"))?;
        }
        Ok(outcomes)
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

    async fn load_message_for_job(&self, message_id: &str) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        ))
        .bind(message_id)
        .fetch_optional(&self.reader)
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
}
