//! Triggers, cancellation and recipient runs.

use super::*;

/// Writes one trigger inside `tx`: idempotency key, inline users, the workflow run, one
/// recipient run and one job per recipient. Nothing is committed here.
async fn write_trigger(tx: &mut Tx<'_>, t: &TriggerWrite) -> StoreResult<TriggerOutcome> {
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
                return Ok(TriggerOutcome::IdempotencyKeyReused);
            }
            let response: String = get(&row, "response", OP)?;
            return Ok(TriggerOutcome::Replayed(parse_json(&response, OP)?));
        }
    }
    for (id, props) in &t.inline_users {
        upsert_user_tx(tx, &t.environment_id, id, props, t.now).await?;
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
    .execute(&mut **tx)
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
            .execute(&mut **tx)
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
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(OP))?;
    }
    Ok(TriggerOutcome::Accepted)
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_triggers(
        &self,
        triggers: &[TriggerWrite],
    ) -> StoreResult<Vec<StoreResult<TriggerOutcome>>> {
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
        let mut outcomes = Vec::with_capacity(triggers.len());
        if let [single] = triggers {
            outcomes.push(write_trigger(&mut tx, single).await);
        } else {
            // Group commit: one transaction, one savepoint per trigger so that a failing
            // trigger is rolled back alone.
            for t in triggers {
                let mut savepoint = sqlx::Acquire::begin(&mut tx)
                    .await
                    .map_err(StoreError::db("savepoint"))?;
                let outcome = write_trigger(&mut savepoint, t).await;
                end_savepoint(savepoint, outcome.is_ok()).await?;
                outcomes.push(outcome);
            }
        }
        if outcomes.iter().any(|o| o.is_ok()) {
            tx.commit()
                .await
                .map_err(StoreError::db("commit triggers"))?;
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
