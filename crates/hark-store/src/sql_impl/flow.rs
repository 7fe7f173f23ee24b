//! Batches, throttles and waits: steps whose outcome depends on other runs, so each is
//! decided inside one transaction together with the run's progress.

use super::*;
use hark_core::batch::{summarize, Activity};

/// Joins or opens can race with other joins, opens and closes; each lost race is retried
/// against the new state, and there are only so many ways to lose.
const MAX_JOIN_ROUNDS: usize = 5;

/// Moves a live run to `cursor` with `status` (`paused` waits for its batch,
/// `processing` goes on).
async fn place_run(
    tx: &mut Tx<'_>,
    run_id: &str,
    cursor: i64,
    status: RunStatus,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE recipient_runs SET step_cursor = $1, status = $2, updated_at = $3 \
         WHERE id = $4 AND status <> 'cancelled'",
    )
    .bind(cursor)
    .bind(status.as_str())
    .bind(now)
    .bind(run_id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("place run"))?;
    Ok(())
}

async fn delete_job(tx: &mut Tx<'_>, job_id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("delete job"))?;
    Ok(())
}

async fn insert_job(
    tx: &mut Tx<'_>,
    environment_id: &str,
    kind: JobKind,
    ref_id: &str,
    run_at: Millis,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, environment_id, kind, ref_id, run_at, lease, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, 0, $6)",
    )
    .bind(new_id())
    .bind(environment_id)
    .bind(kind.as_str())
    .bind(ref_id)
    .bind(run_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("insert job"))?;
    Ok(())
}

async fn insert_item(tx: &mut Tx<'_>, batch_id: &str, seq: i64, j: &BatchJoin) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO batch_items (batch_id, run_id, seq, actor, data, inserted_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (batch_id, run_id) DO NOTHING",
    )
    .bind(batch_id)
    .bind(&j.run_id)
    .bind(seq)
    .bind(&j.actor)
    .bind(to_json_text(&j.data))
    .bind(j.now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("add batch item"))?;
    Ok(())
}

/// Adds `j` to the open batch if there is one: the batch's id, and whether joining it
/// made its close due now (it filled up, or its extension limit has passed). `None` when
/// no batch is open.
async fn join_open_batch(tx: &mut Tx<'_>, j: &BatchJoin) -> StoreResult<Option<(String, bool)>> {
    const OP: &str = "join batch";
    let row = sqlx::query(&format!(
        "SELECT id, opened_at, closes_at, item_count FROM batches \
         WHERE environment_id = $1 AND batch_key = $2 AND status = 'open'{FOR_UPDATE}"
    ))
    .bind(&j.environment_id)
    .bind(&j.batch_key)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let batch_id: String = get(&row, "id", OP)?;
    let opened_at: i64 = get(&row, "opened_at", OP)?;
    let old_close: i64 = get(&row, "closes_at", OP)?;
    let count: i64 = get::<i64>(&row, "item_count", OP)? + 1;
    let mut closes_at = old_close;
    if let Some(slide_to) = j.slide_to {
        closes_at = slide_to;
        if let Some(max) = j.extension_limit.and_then(|l| l.add_to(opened_at)) {
            closes_at = closes_at.min(max);
        }
    }
    // A batch that reached its item limit is `full`: it closes now, and the next trigger
    // for the key opens a new batch instead of waiting for this one to close.
    let full = j.items_max.is_some_and(|max| count >= max);
    if full {
        closes_at = closes_at.min(j.now);
    }
    sqlx::query("UPDATE batches SET item_count = $1, closes_at = $2, status = $3 WHERE id = $4")
        .bind(count)
        .bind(closes_at)
        .bind(if full { "full" } else { "open" })
        .bind(&batch_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    insert_item(tx, &batch_id, count, j).await?;
    let mut close_made_due = false;
    if closes_at != old_close {
        // A close job a worker holds right now re-reads the batch under its lock and
        // reschedules itself, so only an idle one is moved here.
        let moved = sqlx::query(
            "UPDATE jobs SET run_at = $1 WHERE kind = 'close_batch' AND ref_id = $2 AND lease IS NULL",
        )
        .bind(closes_at)
        .bind(&batch_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
        close_made_due = closes_at <= j.now && moved.rows_affected() > 0;
    }
    Ok(Some((batch_id, close_made_due)))
}

/// Opens a batch for `j`. `None` when another transaction opened one first.
async fn open_batch(tx: &mut Tx<'_>, j: &BatchJoin) -> StoreResult<Option<String>> {
    const OP: &str = "open batch";
    let batch_id = new_id();
    let mut settings = j.settings.clone();
    if let (Value::Object(map), Some(max)) = (&mut settings, j.items_max) {
        map.insert("items_max".into(), Value::from(max));
    }
    let opened = sqlx::query(
        "INSERT INTO batches (id, environment_id, batch_key, status, workflow_key, step_ref, settings, \
         opened_at, closes_at, item_count, closed_at) VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, NULL) \
         ON CONFLICT (environment_id, batch_key) WHERE status = 'open' DO NOTHING",
    )
    .bind(&batch_id)
    .bind(&j.environment_id)
    .bind(&j.batch_key)
    .bind(&j.workflow_key)
    .bind(&j.step_ref)
    .bind(to_json_text(&settings))
    .bind(j.now)
    .bind(j.closes_at)
    .bind(if j.flush_leading { 0_i64 } else { 1_i64 })
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    if opened.rows_affected() == 0 {
        return Ok(None);
    }
    insert_job(
        tx,
        &j.environment_id,
        JobKind::CloseBatch,
        &batch_id,
        j.closes_at,
        j.now,
    )
    .await?;
    if !j.flush_leading {
        insert_item(tx, &batch_id, 1, j).await?;
    }
    Ok(Some(batch_id))
}

fn batch_setting_i64(settings: &Value, key: &str) -> Option<i64> {
    settings.get(key).and_then(Value::as_i64)
}

#[async_trait]
impl FlowStore for SqlStore {
    async fn join_batch(
        &self,
        job: &ClaimedJob,
        j: &BatchJoin,
    ) -> StoreResult<Option<BatchJoined>> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(None);
        }
        let mut after = AfterCommit::default();
        for _ in 0..MAX_JOIN_ROUNDS {
            let outcome = if let Some((batch_id, close_due)) = join_open_batch(&mut tx, j).await? {
                after.jobs_made_due = close_due;
                BatchJoined::Joined { batch_id }
            } else if let Some(batch_id) = open_batch(&mut tx, j).await? {
                BatchJoined::Opened {
                    batch_id,
                    flushed: j.flush_leading,
                }
            } else {
                continue;
            };
            let (name, batch_id) = match &outcome {
                BatchJoined::Opened {
                    batch_id,
                    flushed: true,
                } => ("batch_opened_and_flushed", batch_id),
                BatchJoined::Opened { batch_id, .. } => ("batch_opened", batch_id),
                BatchJoined::Joined { batch_id } => ("batch_joined", batch_id),
            };
            let mut events = j.events.clone();
            events.push(RunEvent {
                id: new_id(),
                event: name.into(),
                status: "ok".into(),
                step_ref: Some(j.step_ref.clone()),
                step_type: Some("batch".into()),
                attempt: 1,
                data: serde_json::json!({"batch_id": batch_id}),
                inserted_at: j.now,
            });
            insert_run_events(&mut tx, &j.run_id, &events).await?;
            if matches!(outcome, BatchJoined::Opened { flushed: true, .. }) {
                sqlx::query(&format!(
                    "UPDATE recipient_runs SET updated_at = $1, step_cursor = $2, status = 'processing', \
                     state = {STATE_WITH_BATCH_SQL} WHERE id = $3 AND status <> 'cancelled'"
                ))
                .bind(j.now)
                .bind(j.next_cursor)
                .bind(&j.run_id)
                .bind(to_json_text(&j.flush_state))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("flush leading item"))?;
            } else {
                // The run waits in the batch; the batch's close job wakes whichever run
                // continues, so this run's own job is done.
                place_run(&mut tx, &j.run_id, j.next_cursor, RunStatus::Paused, j.now).await?;
                delete_job(&mut tx, &job.id).await?;
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit batch join"))?;
            self.announce(after);
            return Ok(Some(outcome));
        }
        Err(StoreError::Corrupt {
            operation: "join batch",
            detail: format!(
                "no open batch for `{}` could be joined or opened",
                j.batch_key
            ),
        })
    }

    async fn close_batch(&self, job: &ClaimedJob, now: Millis) -> StoreResult<Option<BatchClosed>> {
        const OP: &str = "close batch";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT id, environment_id, status, closes_at, item_count, settings FROM batches WHERE id = $1{FOR_UPDATE}"
        ))
        .bind(&job.ref_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        let Some(row) = row
            .filter(|r| get::<String>(r, "status", OP).is_ok_and(|s| s == "open" || s == "full"))
        else {
            delete_job(&mut tx, &job.id).await?;
            tx.commit().await.map_err(StoreError::db(OP))?;
            return Ok(Some(BatchClosed::AlreadyClosed));
        };
        let environment_id: String = get(&row, "environment_id", OP)?;
        let closes_at: i64 = get(&row, "closes_at", OP)?;
        let item_count: i64 = get(&row, "item_count", OP)?;
        let settings_text: String = get(&row, "settings", OP)?;
        let settings = parse_json(&settings_text, OP)?;
        let full = batch_setting_i64(&settings, "items_max").is_some_and(|max| item_count >= max);
        if closes_at > now && !full {
            sqlx::query("UPDATE jobs SET run_at = $1, lease = NULL WHERE id = $2")
                .bind(closes_at)
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            tx.commit().await.map_err(StoreError::db(OP))?;
            return Ok(Some(BatchClosed::Rescheduled(closes_at)));
        }
        sqlx::query("UPDATE batches SET status = 'closed', closed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&job.ref_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        delete_job(&mut tx, &job.id).await?;
        let rows = sqlx::query(
            "SELECT run_id, actor, data, inserted_at FROM batch_items WHERE batch_id = $1 ORDER BY seq",
        )
        .bind(&job.ref_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let data: String = get(row, "data", OP)?;
            items.push(BatchActivity {
                run_id: get(row, "run_id", OP)?,
                actor: get(row, "actor", OP)?,
                data: parse_json(&data, OP)?,
                inserted_at: get(row, "inserted_at", OP)?,
            });
        }
        let activities: Vec<Activity<'_>> = items
            .iter()
            .map(|i| Activity {
                run_id: &i.run_id,
                actor: i.actor.as_deref(),
                data: &i.data,
                inserted_at: i.inserted_at,
            })
            .collect();
        let render_limit = batch_setting_i64(&settings, "render_limit")
            .unwrap_or(10)
            .max(1);
        let order_desc = settings
            .get("order_desc")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let summary = summarize(&activities, render_limit as usize, order_desc);
        let mut batch_state = summary.state;
        if let Value::Object(map) = &mut batch_state {
            map.insert("batch_id".into(), Value::String(job.ref_id.clone()));
            for key in ["step_ref", "version_latest"] {
                if let Some(v) = settings.get(key) {
                    map.insert(key.into(), v.clone());
                }
            }
        }
        // The first activity whose run is still live continues; the check and the update
        // are one statement so a cancel racing with the close can't leave nobody to continue.
        let mut continuation = None;
        for item in &items {
            let updated = sqlx::query(&format!(
                "UPDATE recipient_runs SET status = 'queued', updated_at = $1, data = $2, \
                 state = {} WHERE id = $3 AND status = 'paused' RETURNING id",
                STATE_WITH_BATCH_SQL
            ))
            .bind(now)
            .bind(to_json_text(&summary.merged_data))
            .bind(&item.run_id)
            .bind(to_json_text(&batch_state))
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            if updated.is_some() {
                continuation = Some(item.run_id.clone());
                break;
            }
        }
        let Some(continuation) = continuation else {
            tx.commit().await.map_err(StoreError::db(OP))?;
            return Ok(Some(BatchClosed::Empty));
        };
        insert_job(
            &mut tx,
            &environment_id,
            JobKind::AdvanceRun,
            &continuation,
            now,
            now,
        )
        .await?;
        let closed_event = RunEvent {
            id: new_id(),
            event: "batch_closed".into(),
            status: "ok".into(),
            step_ref: settings
                .get("step_ref")
                .and_then(Value::as_str)
                .map(str::to_string),
            step_type: Some("batch".into()),
            attempt: 1,
            data: serde_json::json!({
                "batch_id": job.ref_id,
                "total_activities": items.len(),
                "continues_run": continuation,
            }),
            inserted_at: now,
        };
        insert_run_events(&mut tx, &continuation, std::slice::from_ref(&closed_event)).await?;
        for item in items.iter().filter(|i| i.run_id != continuation) {
            let merged = sqlx::query(
                "UPDATE recipient_runs SET status = 'completed', updated_at = $1 WHERE id = $2 AND status = 'paused'",
            )
            .bind(now)
            .bind(&item.run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            if merged.rows_affected() == 1 {
                let event = RunEvent {
                    id: new_id(),
                    event: "batch_closed".into(),
                    ..closed_event.clone()
                };
                insert_run_events(&mut tx, &item.run_id, std::slice::from_ref(&event)).await?;
            }
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(Some(BatchClosed::Closed {
            continuation_run_id: continuation,
            total_activities: items.len() as i64,
        }))
    }

    async fn hit_throttle(&self, job: &ClaimedJob, h: &ThrottleHit) -> StoreResult<Option<bool>> {
        const OP: &str = "hit throttle";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(None);
        }
        // One statement, so concurrent hits serialise on the row: the window restarts when
        // it ended, otherwise the hit is counted.
        let row = sqlx::query(
            "INSERT INTO throttles (environment_id, throttle_key, window_end, hits) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (environment_id, throttle_key) DO UPDATE SET \
             hits = CASE WHEN throttles.window_end <= $4 THEN 1 ELSE throttles.hits + 1 END, \
             window_end = CASE WHEN throttles.window_end <= $4 THEN excluded.window_end ELSE throttles.window_end END \
             RETURNING hits",
        )
        .bind(&h.environment_id)
        .bind(&h.throttle_key)
        .bind(h.window_end)
        .bind(h.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        let hits: i64 = get(&row, "hits", OP)?;
        let passed = hits <= h.limit;
        if passed {
            insert_run_events(&mut tx, &h.run_id, &h.events_if_passed).await?;
            place_run(
                &mut tx,
                &h.run_id,
                h.next_cursor,
                RunStatus::Processing,
                h.now,
            )
            .await?;
        } else {
            insert_run_events(&mut tx, &h.run_id, &h.events_if_throttled).await?;
            sqlx::query(
                "UPDATE recipient_runs SET status = 'completed', updated_at = $1 WHERE id = $2 AND status <> 'cancelled'",
            )
            .bind(h.now)
            .bind(&h.run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            delete_job(&mut tx, &job.id).await?;
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(Some(passed))
    }

    async fn wait_candidates(&self, wait_id: &str) -> StoreResult<Vec<WaitCandidate>> {
        const OP: &str = "wait candidates";
        let rows = sqlx::query(
            "SELECT id, payload, inserted_at FROM wait_events WHERE wait_id = $1 ORDER BY inserted_at, id",
        )
        .bind(wait_id)
        .fetch_all(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db(OP))?;
        rows.iter()
            .map(|row| {
                let payload: String = get(row, "payload", OP)?;
                Ok(WaitCandidate {
                    id: get(row, "id", OP)?,
                    payload: parse_json(&payload, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect()
    }
}
