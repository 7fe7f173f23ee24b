//! Fan-out of a trigger to an object's subscribers: one page per transaction, the cursor
//! committed with the runs it created, so a crash resumes where the last page ended.

use super::runs::{insert_fanout, insert_runs, mark_seen, RunTemplate};
use super::*;

/// Subscribers nested deeper than this are not reached, as in Knock.
const MAX_DEPTH: i64 = 2;

async fn load_template(tx: &mut Tx<'_>, id: &str) -> StoreResult<Option<(FanOut, RunTemplate)>> {
    const OP: &str = "load fan-out";
    let row = sqlx::query(
        "SELECT id, environment_id, collection, object_id, depth, after_collection, after_id, trigger \
         FROM fanouts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let trigger: String = get(&row, "trigger", OP)?;
    let template: RunTemplate =
        serde_json::from_str(&trigger).map_err(|e| StoreError::Corrupt {
            operation: OP,
            detail: e.to_string(),
        })?;
    let after_id: Option<String> = get(&row, "after_id", OP)?;
    let after_collection: Option<String> = get(&row, "after_collection", OP)?;
    Ok(Some((
        FanOut {
            id: get(&row, "id", OP)?,
            environment_id: get(&row, "environment_id", OP)?,
            collection: get(&row, "collection", OP)?,
            object_id: get(&row, "object_id", OP)?,
            depth: get(&row, "depth", OP)?,
            after: after_id.map(|id| RecipientKey {
                collection: after_collection.filter(|c| !c.is_empty()),
                id,
            }),
            actor: template.actor.clone(),
        },
        template,
    )))
}

#[async_trait]
impl FanOutStore for SqlStore {
    async fn load_fanout(&self, id: &str) -> StoreResult<Option<FanOut>> {
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let found = load_template(&mut tx, id).await?.map(|(f, _)| f);
        tx.commit().await.map_err(StoreError::db("load fan-out"))?;
        Ok(found)
    }

    async fn fan_out_page(
        &self,
        job: &ClaimedJob,
        fanout: &FanOut,
        page: &[SubscriptionRecord],
        lease: Option<&JobLease>,
        now: Millis,
    ) -> StoreResult<Option<Written<usize>>> {
        const OP: &str = "fan out page";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        if !hold_lease(&mut tx, job).await? {
            return Ok(None);
        }
        let Some((current, template)) = load_template(&mut tx, &fanout.id).await? else {
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            tx.commit().await.map_err(StoreError::db(OP))?;
            return Ok(Some(Written::without_jobs(0)));
        };
        let Some(last) = page.last() else {
            for sql in [
                "DELETE FROM jobs WHERE id = $1",
                "DELETE FROM fanouts WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(if sql.contains("jobs") {
                        &job.id
                    } else {
                        &fanout.id
                    })
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
            }
            tx.commit().await.map_err(StoreError::db(OP))?;
            return Ok(Some(Written::without_jobs(0)));
        };
        // A page that starts before the committed cursor was read by a stale worker.
        if current
            .after
            .as_ref()
            .is_some_and(|after| &page[0].recipient <= after)
        {
            return Ok(None);
        }
        let candidates: Vec<RecipientKey> = page
            .iter()
            .map(|s| s.recipient.clone())
            .filter(|r| {
                !(r.collection.is_none() && template.actor.as_deref() == Some(r.id.as_str()))
            })
            .collect();
        let fresh: std::collections::HashSet<RecipientKey> =
            mark_seen(&mut tx, &template.workflow_run_id, &candidates)
                .await?
                .into_iter()
                .collect();
        let mut runs = Vec::new();
        for sub in page.iter().filter(|s| fresh.contains(&s.recipient)) {
            match &sub.recipient.collection {
                None => {
                    // `recipient.subscription` in the run scope: the subscription's
                    // properties and the object it is for.
                    let mut subscription = sub.properties.as_object().cloned().unwrap_or_default();
                    subscription.insert(
                        "object".into(),
                        serde_json::json!({"id": sub.object_id, "collection": sub.collection}),
                    );
                    let mut state = template.state.clone();
                    if let Value::Object(map) = &mut state {
                        map.insert("subscription".into(), Value::Object(subscription));
                    }
                    runs.push((sub.recipient.clone(), state));
                }
                Some(collection) if current.depth < MAX_DEPTH => {
                    insert_fanout(
                        &mut tx,
                        &template,
                        collection,
                        &sub.recipient.id,
                        current.depth + 1,
                        now,
                    )
                    .await?;
                }
                Some(_) => {}
            }
        }
        let leased_jobs = insert_runs(&mut tx, &template, &runs, lease, now).await?;
        sqlx::query("UPDATE fanouts SET after_collection = $1, after_id = $2 WHERE id = $3")
            .bind(last.recipient.collection.clone().unwrap_or_default())
            .bind(&last.recipient.id)
            .bind(&fanout.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(Some(Written {
            outcome: runs.len(),
            leased_jobs,
        }))
    }
}
