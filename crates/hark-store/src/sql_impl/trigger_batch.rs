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
    apply_early_cancellation, push_run_rows, signal_trigger_started, RunRow, RunTemplate,
};
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
/// An error means none of them may be reported as accepted, and `tx` must be rolled back.
/// Returns, trigger by trigger, the jobs written leased to the writer; runs made due
/// (waits on a workflow starting) are noted in `after`.
///
/// The rows and the question whether any trigger needs more (a run waiting for the
/// workflow to start, a cancel that arrived first) go to the database as one request.
pub(super) async fn write_plain_triggers(
    tx: &mut Tx<'_>,
    batch: &[&TriggerWrite],
    after: &mut AfterCommit,
) -> StoreResult<Vec<Vec<ClaimedJob>>> {
    const OP: &str = "create triggers";
    let mut chain = Chain::new();
    push_workflow_runs(&mut chain, batch);
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
                state: &template.state,
                state_text: state,
                lease: t.lease.as_ref(),
                now: t.now,
            });
        }
    }
    let mut leased = push_run_rows(&mut chain, &rows).into_iter();
    let leased_per_trigger: Vec<Vec<ClaimedJob>> = batch
        .iter()
        .map(|t| leased.by_ref().take(t.recipients.len()).flatten().collect())
        .collect();

    let now = batch.iter().map(|t| t.now).min().unwrap_or_default();
    let workflows: Vec<(String, String)> = workflows_of(batch).into_iter().collect();
    let keyed: HashSet<(String, String)> = workflows_of(
        &batch
            .iter()
            .copied()
            .filter(|t| t.cancellation_key.is_some())
            .collect::<Vec<_>>(),
    );
    let found = chain
        .fetch_all(tx, workflows.len() * 5, |qb| {
            push_follow_up_query(qb, &workflows, &keyed, now)
        })
        .await
        .map_err(StoreError::db(OP))?;
    let mut with_waits = HashSet::new();
    let mut with_cancels = HashSet::new();
    for row in &found {
        let kind: String = get(row, "found", OP)?;
        let workflow = (
            get(row, "environment_id", OP)?,
            get(row, "workflow_key", OP)?,
        );
        if kind == "wait" {
            with_waits.insert(workflow);
        } else {
            with_cancels.insert(workflow);
        }
    }
    for t in batch {
        let workflow = (t.environment_id.clone(), t.workflow_key.clone());
        if t.cancellation_key.is_some() && with_cancels.contains(&workflow) {
            apply_early_cancellation(tx, t).await?;
        }
        if with_waits.contains(&workflow) {
            after.jobs_made_due |= signal_trigger_started(tx, t).await?;
        }
    }
    Ok(leased_per_trigger)
}

/// One row per workflow of the batch that has a run waiting for it to start
/// (`found = 'wait'`), and per workflow among `keyed` with an unexpired cancel that arrived
/// before its trigger (`found = 'cancel'`). At most 5 parameters per workflow.
fn push_follow_up_query(
    qb: &mut QueryBuilder<'static, Db>,
    workflows: &[(String, String)],
    keyed: &HashSet<(String, String)>,
    now: Millis,
) {
    let mut first = true;
    let mut union = |qb: &mut QueryBuilder<'static, Db>| {
        if !std::mem::take(&mut first) {
            qb.push(" UNION ALL ");
        }
    };
    for (i, (environment_id, workflow_key)) in workflows.iter().enumerate() {
        union(qb);
        qb.push(
            "SELECT * FROM (SELECT 'wait' AS found, environment_id, source_key AS workflow_key \
             FROM waits WHERE environment_id = ",
        );
        qb.push_bind(environment_id.clone());
        qb.push(" AND status = 'open' AND event_type = 'workflow' AND source_key = ");
        qb.push_bind(workflow_key.clone());
        qb.push(format!(" AND event_key = 'started' LIMIT 1) AS w{i}"));
        if keyed.contains(&(environment_id.clone(), workflow_key.clone())) {
            union(qb);
            qb.push(
                "SELECT * FROM (SELECT 'cancel' AS found, environment_id, workflow_key \
                 FROM early_cancellations WHERE environment_id = ",
            );
            qb.push_bind(environment_id.clone());
            qb.push(" AND workflow_key = ");
            qb.push_bind(workflow_key.clone());
            qb.push(" AND expires_at > ");
            qb.push_bind(now);
            qb.push(format!(" LIMIT 1) AS c{i}"));
        }
    }
}

/// Inserts one `workflow_runs` row per trigger.
pub(super) async fn insert_workflow_runs(
    tx: &mut Tx<'_>,
    triggers: &[&TriggerWrite],
) -> StoreResult<()> {
    Chain::execute_one(tx, "create triggers", |chain| {
        push_workflow_runs(chain, triggers)
    })
    .await
}

/// Adds one `workflow_runs` row per trigger to `chain`, in multi-row statements (6
/// parameters per row).
fn push_workflow_runs(chain: &mut Chain, triggers: &[&TriggerWrite]) {
    for chunk in triggers.chunks(1000) {
        chain.push(chunk.len() * 6, |qb| {
            qb.push(
                "INSERT INTO workflow_runs (id, environment_id, workflow_key, workflow_version, recipient_count, inserted_at) ",
            );
            qb.push_rows(Rows::of(chunk.iter(), |b, t| {
                b.push_bind(t.workflow_run_id.clone())
                    .push_bind(t.environment_id.clone())
                    .push_bind(t.workflow_key.clone())
                    .push_bind(t.workflow_version)
                    .push_bind(t.recipients.len() as i64)
                    .push_bind(t.now);
            }));
        });
    }
}

/// The batch's distinct `(environment, workflow)` pairs.
fn workflows_of(batch: &[&TriggerWrite]) -> HashSet<(String, String)> {
    batch
        .iter()
        .map(|t| (t.environment_id.clone(), t.workflow_key.clone()))
        .collect()
}
