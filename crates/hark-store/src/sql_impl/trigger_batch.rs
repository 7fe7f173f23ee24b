//! Plain triggers of one group commit, written together: a handful of multi-row
//! statements for the whole batch instead of a savepoint and five statements per trigger.
//!
//! A trigger is plain when nothing it writes can conflict with another request: no
//! idempotency key, no inline users, objects or documents, no fan-out, and a workflow that
//! runs on every trigger. Waits on `workflow.started` and early cancellations are rare, so
//! the batch first asks whether any exist for its workflows and hands the triggers they
//! concern to the per-trigger statements.

use std::collections::HashSet;

use super::runs::{
    apply_early_cancellation, insert_run_rows, signal_trigger_started, RunRow, RunTemplate,
};
use super::step_batch::any_open_waits;
use super::*;

/// Whether `t` may be written by [`write_plain_triggers`].
pub(super) fn is_plain(t: &TriggerWrite) -> bool {
    t.idempotency.is_none()
        && t.inline_users.is_empty()
        && t.inline_objects.is_empty()
        && t.inline_documents.is_empty()
        && t.fan_outs.is_empty()
        && t.frequency == TriggerFrequency::EveryTrigger
}

/// Writes every trigger of `batch` (all plain) inside `tx`; nothing is committed here.
/// An error means none of them may be reported as accepted.
pub(super) async fn write_plain_triggers(
    tx: &mut Tx<'_>,
    batch: &[&TriggerWrite],
) -> StoreResult<()> {
    insert_workflow_runs(tx, batch).await?;
    let templates: Vec<(RunTemplate, String, String)> = batch
        .iter()
        .map(|t| {
            (
                RunTemplate::of(t),
                to_json_text(&t.data),
                to_json_text(&t.state),
            )
        })
        .collect();
    let mut rows = Vec::new();
    for ((template, data, state), t) in templates.iter().zip(batch) {
        for id in &t.recipients {
            rows.push(RunRow {
                template,
                data,
                recipient: RecipientKey {
                    collection: None,
                    id: id.clone(),
                },
                state,
                now: t.now,
            });
        }
    }
    insert_run_rows(tx, &rows).await?;

    let now = batch.iter().map(|t| t.now).min().unwrap_or_default();
    let with_waits = workflows_with_open_start_waits(tx, batch).await?;
    let with_cancels = workflows_with_early_cancellations(tx, batch, now).await?;
    for t in batch {
        let workflow = (t.environment_id.clone(), t.workflow_key.clone());
        if t.cancellation_key.is_some() && with_cancels.contains(&workflow) {
            apply_early_cancellation(tx, t).await?;
        }
        if with_waits.contains(&workflow) {
            signal_trigger_started(tx, t).await?;
        }
    }
    Ok(())
}

/// One `workflow_runs` row per trigger, in multi-row statements (6 parameters per row).
pub(super) async fn insert_workflow_runs(
    tx: &mut Tx<'_>,
    triggers: &[&TriggerWrite],
) -> StoreResult<()> {
    for chunk in triggers.chunks(1000) {
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO workflow_runs (id, environment_id, workflow_key, workflow_version, recipient_count, inserted_at) ",
        );
        qb.push_values(chunk.iter(), |mut b, t| {
            b.push_bind(t.workflow_run_id.clone())
                .push_bind(t.environment_id.clone())
                .push_bind(t.workflow_key.clone())
                .push_bind(t.workflow_version)
                .push_bind(t.recipients.len() as i64)
                .push_bind(t.now);
        });
        qb.build()
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("create triggers"))?;
    }
    Ok(())
}

/// The batch's distinct `(environment, workflow)` pairs.
fn workflows_of(batch: &[&TriggerWrite]) -> HashSet<(String, String)> {
    batch
        .iter()
        .map(|t| (t.environment_id.clone(), t.workflow_key.clone()))
        .collect()
}

/// Workflows of the batch some run waits on (`workflow.started`).
async fn workflows_with_open_start_waits(
    tx: &mut Tx<'_>,
    batch: &[&TriggerWrite],
) -> StoreResult<HashSet<(String, String)>> {
    let mut found = HashSet::new();
    for (environment_id, workflow_key) in workflows_of(batch) {
        if any_open_waits(
            tx,
            &environment_id,
            "workflow",
            Some((&workflow_key, "started")),
        )
        .await?
        {
            found.insert((environment_id, workflow_key));
        }
    }
    Ok(found)
}

/// Workflows of the batch with a cancel that arrived before its trigger and still applies.
async fn workflows_with_early_cancellations(
    tx: &mut Tx<'_>,
    batch: &[&TriggerWrite],
    now: Millis,
) -> StoreResult<HashSet<(String, String)>> {
    let keyed: Vec<&TriggerWrite> = batch
        .iter()
        .copied()
        .filter(|t| t.cancellation_key.is_some())
        .collect();
    let mut found = HashSet::new();
    for (environment_id, workflow_key) in workflows_of(&keyed) {
        let any = sqlx::query(
            "SELECT 1 FROM early_cancellations WHERE environment_id = $1 AND workflow_key = $2 \
             AND expires_at > $3 LIMIT 1",
        )
        .bind(&environment_id)
        .bind(&workflow_key)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db("find early cancellations"))?;
        if any.is_some() {
            found.insert((environment_id, workflow_key));
        }
    }
    Ok(found)
}
