//! Advancing a recipient run: walk the pinned workflow's program from the run's cursor,
//! committing each node's outcome (and its message, pause or data change) atomically with
//! the cursor.

use crate::prefetch::Prefetched;
use std::sync::Arc;

use hark_core::new_id;
use hark_core::recipient::FieldError;
use hark_core::workflow::{cohort_index, Node, Step, StepKind, WorkflowDefinition};
use hark_store::{ClaimedJob, RecipientRun, RunEvent, RunStatus, StepCommit, StoreError};
use serde_json::{json, Value};

use crate::context::RunContext;
use crate::Engine;

/// Parsed workflow versions kept at most; the cache starts over when full.
const MAX_CACHED_WORKFLOWS: usize = 1024;

/// A run-log event. `step` names the step it belongs to, as `(ref, type)`.
pub(crate) fn event(
    name: &str,
    ok: bool,
    step: Option<(&str, &str)>,
    data: Value,
    now: i64,
) -> RunEvent {
    RunEvent {
        id: new_id(),
        event: name.to_string(),
        status: if ok { "ok" } else { "error" }.to_string(),
        step_ref: step.map(|(r, _)| r.to_string()),
        step_type: step.map(|(_, t)| t.to_string()),
        attempt: 1,
        data,
        inserted_at: now,
    }
}

pub(crate) fn step_event(name: &str, ok: bool, step: &Step, data: Value, now: i64) -> RunEvent {
    event(
        name,
        ok,
        Some((&step.step_ref, step.step_type())),
        data,
        now,
    )
}

/// What a node decided.
pub(crate) enum Flow {
    /// Commit, then go on with the next node.
    Next(StepCommit),
    /// Commit, then go on at this node.
    Jump(usize, StepCommit),
    /// Commit; the run pauses (`resume_at`) or finishes (`finished`) with it.
    Stop(StepCommit),
    /// The store already committed the step; go on with the next node.
    Continue,
    /// The store already committed the step and this job is done with the run.
    Done,
}

impl RunContext {
    pub(crate) fn commit(&self, now: i64) -> StepCommit {
        StepCommit {
            run_id: self.run.id.clone(),
            now,
            ..StepCommit::default()
        }
    }

    /// A commit that ends the run.
    pub(crate) fn finish(&self, now: i64, events: Vec<RunEvent>, error: bool) -> StepCommit {
        let mut commit = self.commit(now);
        commit.next_cursor = self.run.step_cursor;
        commit.finished = Some(RunStatus::Completed);
        commit.events = events;
        commit.error = error;
        commit
    }
}

/// The node the run really continues at: jumps followed, `None` past the end.
fn resolve(program: &[Node], mut pc: usize) -> Option<usize> {
    for _ in 0..=program.len() {
        match program.get(pc)? {
            Node::Goto(target) => pc = *target,
            _ => return Some(pc),
        }
    }
    None
}

impl Engine {
    /// The parsed workflow version a run is pinned to. Versions never change once
    /// committed, so each is loaded and parsed once per process.
    pub async fn pinned_workflow(
        &self,
        environment_id: &str,
        workflow_key: &str,
        version: i64,
    ) -> Result<Result<Arc<WorkflowDefinition>, Vec<FieldError>>, StoreError> {
        let key = (
            environment_id.to_string(),
            workflow_key.to_string(),
            version,
        );
        if let Some(found) = self
            .inner
            .workflows
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(Ok(found));
        }
        let definition = self
            .inner
            .store
            .workflow_version(environment_id, workflow_key, version)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                operation: "load pinned workflow",
                detail: format!("workflow {workflow_key} version {version} is missing"),
            })?;
        let channels = self.inner.channels.clone();
        match WorkflowDefinition::parse(&definition, &|k| channels.type_of(k)) {
            Ok(parsed) => {
                let parsed = Arc::new(parsed);
                if let Ok(mut cache) = self.inner.workflows.lock() {
                    if cache.len() >= MAX_CACHED_WORKFLOWS {
                        cache.clear();
                    }
                    cache.insert(key, parsed.clone());
                }
                Ok(Ok(parsed))
            }
            Err(errors) => Ok(Err(errors)),
        }
    }

    /// Commits a step outcome through the group committer (which hands the jobs it
    /// creates to this node's workers, or wakes workers for them) and counts what it did:
    /// a run it finished (whatever the path: last step, unmet conditions, a halted
    /// branch), or a commit refused because the lease was lost.
    pub(crate) async fn submit_step(
        &self,
        job: &ClaimedJob,
        commit: StepCommit,
    ) -> Result<bool, StoreError> {
        let finished = commit.finished;
        let resume_at = commit.resume_at;
        let written = self.inner.steps.submit((job.clone(), commit)).await?;
        if let (true, Some(at)) = (written, resume_at) {
            self.note_timer(at);
        }
        if !written {
            metrics::counter!("hark_commits_fenced_total").increment(1);
            tracing::info!(job = %job.id, "lease lost; another worker owns this run now");
        } else if let Some(status) = finished {
            metrics::counter!("hark_runs_finished_total", "status" => status.as_str()).increment(1);
        }
        Ok(written)
    }

    pub(crate) async fn advance_run(
        &self,
        job: &ClaimedJob,
        prefetched: Option<&Prefetched>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let run = match prefetched.and_then(|p| p.run(&job.ref_id)) {
            Some(run) => Some(run),
            None => store.load_run_for_job(&job.ref_id).await?,
        };
        let Some(run) = run else {
            store.complete_job(job).await?;
            return Ok(());
        };
        if matches!(run.status, RunStatus::Completed | RunStatus::Cancelled) {
            store.complete_job(job).await?;
            return Ok(());
        }
        let workflow = match self
            .pinned_workflow(&run.environment_id, &run.workflow_key, run.workflow_version)
            .await?
        {
            Ok(w) => w,
            Err(errors) => {
                // The version was valid when committed; a channel removed from the config
                // since then makes it unrunnable. Record why and finish the run.
                let now = self.inner.clock.now_ms();
                let commit = finish_unrunnable(&run, json!({"errors": errors}), now);
                self.submit_step(job, commit).await?;
                return Ok(());
            }
        };
        let mut ctx = RunContext::load(self, run, workflow.clone(), prefetched).await?;
        let mut pc = ctx.run.step_cursor as usize;
        let mut workflow = workflow;
        if ctx.run.status == RunStatus::Queued && ctx.state.get("batch").is_some() {
            match self.continue_after_batch(job, &mut ctx).await? {
                AfterBatch::Same => {}
                AfterBatch::Switched(latest, cursor) => {
                    workflow = latest;
                    pc = cursor;
                }
                AfterBatch::Stop => return Ok(()),
            }
        }

        if pc == 0 && ctx.run.status == RunStatus::Queued {
            if let Some(group) = &workflow.conditions {
                let now = self.inner.clock.now_ms();
                let evaluation = ctx.evaluate(self, group, now).await?;
                if !evaluation.passed {
                    let ev = event(
                        "workflow_conditions_not_met",
                        true,
                        None,
                        json!({"conditions": evaluation}),
                        now,
                    );
                    let commit = ctx.finish(now, vec![ev], false);
                    self.submit_step(job, commit).await?;
                    return Ok(());
                }
            }
        }

        loop {
            let now = self.inner.clock.now_ms();
            let Some(at) = resolve(&workflow.program, pc) else {
                let done = event("workflow_run_completed", true, None, json!({}), now);
                let commit = ctx.finish(now, vec![done], false);
                self.submit_step(job, commit).await?;
                return Ok(());
            };
            pc = at;
            let flow = match &workflow.program[pc] {
                Node::Goto(_) => continue,
                Node::Halt { step_ref } => {
                    let ev = event(
                        "workflow_run_completed",
                        true,
                        Some((step_ref, "branch")),
                        json!({"reason": "branch_terminated"}),
                        now,
                    );
                    Flow::Stop(ctx.finish(now, vec![ev], false))
                }
                Node::Branch {
                    step_ref,
                    arms,
                    after,
                } => {
                    let mut results = Vec::new();
                    let mut chosen = None;
                    for arm in arms {
                        let passed = match &arm.conditions {
                            None => true,
                            Some(group) => {
                                let evaluation = ctx.evaluate(self, group, now).await?;
                                let passed = evaluation.passed;
                                results.push(json!({"branch": arm.name, "conditions": evaluation}));
                                passed
                            }
                        };
                        if passed {
                            chosen = Some(arm);
                            break;
                        }
                    }
                    let target = chosen.map(|a| a.start).unwrap_or(*after);
                    let mut commit = ctx.commit(now);
                    commit.events.push(event(
                        "branch_evaluated",
                        true,
                        Some((step_ref, "branch")),
                        json!({"chosen_branch": chosen.map(|a| a.name.clone()), "evaluations": results}),
                        now,
                    ));
                    Flow::Jump(target, commit)
                }
                Node::Cohort {
                    step_ref,
                    cohort_key,
                    arms,
                    after,
                } => {
                    let key = self.cohort_key(&ctx, cohort_key.as_deref(), now).await;
                    let index = cohort_index(step_ref, &key, arms);
                    let target = index
                        .and_then(|i| arms.get(i))
                        .map(|a| a.start)
                        .unwrap_or(*after);
                    let mut commit = ctx.commit(now);
                    commit.events.push(event(
                        "cohort_assigned",
                        true,
                        Some((step_ref, "random_cohort")),
                        json!({
                            "cohort_key": key,
                            "cohort": index.and_then(|i| arms.get(i)).map(|a| a.name.clone()),
                            "distribution": arms.iter().map(|a| json!({"name": a.name, "percentage": f64::from(a.per_mille) / 10.0})).collect::<Vec<_>>(),
                        }),
                        now,
                    ));
                    Flow::Jump(target, commit)
                }
                Node::Step(step) => self.run_step(job, &mut ctx, step, pc, now).await?,
            };
            let (next, commit) = match flow {
                Flow::Next(commit) => (pc + 1, commit),
                Flow::Jump(target, commit) => (target, commit),
                Flow::Stop(mut commit) => {
                    if commit.finished.is_none() && commit.resume_at.is_none() {
                        commit.next_cursor = pc as i64;
                    }
                    self.submit_step(job, commit).await?;
                    return Ok(());
                }
                Flow::Continue => {
                    pc += 1;
                    ctx.run.step_cursor = pc as i64;
                    continue;
                }
                Flow::Done => return Ok(()),
            };
            let mut commit = commit;
            commit.next_cursor = next as i64;
            // The last step finishes the run in the same commit.
            if resolve(&workflow.program, next).is_none() && commit.finished.is_none() {
                commit.finished = Some(RunStatus::Completed);
                commit
                    .events
                    .push(event("workflow_run_completed", true, None, json!({}), now));
            }
            let finished = commit.finished;
            let created = commit
                .message
                .as_ref()
                .map(|m| (m.channel_type.clone(), m.status.clone()));
            if let Some(data) = &commit.data {
                ctx.data = data.clone();
            }
            if let Some(state) = &commit.state {
                ctx.state = state.clone();
            }
            if !self.submit_step(job, commit).await? {
                return Ok(());
            }
            if let Some((channel_type, status)) = created {
                metrics::counter!("hark_messages_total", "channel_type" => channel_type, "status" => status)
                    .increment(1);
            }
            if finished.is_some() {
                return Ok(());
            }
            pc = next;
            ctx.run.step_cursor = pc as i64;
        }
    }

    /// Runs one step whose conditions hold (or skips it when they don't).
    async fn run_step(
        &self,
        job: &ClaimedJob,
        ctx: &mut RunContext,
        step: &Step,
        pc: usize,
        now: i64,
    ) -> Result<Flow, StoreError> {
        // A step that paused keeps its place; its conditions were checked on arrival.
        let resuming = ctx
            .state
            .pointer("/resume/step_ref")
            .and_then(Value::as_str)
            == Some(step.step_ref.as_str());
        if let (Some(group), false) = (&step.conditions, resuming) {
            let evaluation = ctx.evaluate(self, group, now).await?;
            if !evaluation.passed {
                let mut commit = ctx.commit(now);
                commit.events.push(step_event(
                    "step_skipped",
                    true,
                    step,
                    json!({"reason": "conditions_not_met", "conditions": evaluation}),
                    now,
                ));
                return Ok(Flow::Next(commit));
            }
        }
        Ok(match &step.kind {
            StepKind::Channel(channel_step) => {
                Flow::Next(self.channel_step(ctx, step, channel_step, now).await?)
            }
            StepKind::Delay(settings) => self.delay_step(ctx, step, settings, pc, now),
            StepKind::UpdateData(settings) => self.update_data_step(ctx, step, settings, now).await,
            StepKind::HttpFetch(settings) => self.fetch_step(ctx, step, settings, pc, now).await,
            StepKind::TriggerWorkflow(settings) => {
                self.trigger_workflow_step(ctx, step, settings, now).await?
            }
            StepKind::Throttle(settings) => {
                self.throttle_step(job, ctx, step, settings, pc, now)
                    .await?
            }
            StepKind::Batch(settings) => self.batch_step(job, ctx, step, settings, pc, now).await?,
            StepKind::WaitForEvent(settings) => {
                self.wait_step(ctx, step, settings, pc, now).await?
            }
            // Compiled into program nodes; never a plain step.
            StepKind::Branch(_) | StepKind::RandomCohort(_) => Flow::Next(ctx.commit(now)),
        })
    }

    /// The value a random cohort hashes: the rendered or resolved `cohort_key`, else the
    /// recipient id.
    async fn cohort_key(&self, ctx: &RunContext, cohort_key: Option<&str>, now: i64) -> String {
        let Some(source) = cohort_key else {
            return ctx.run.recipient_id.clone();
        };
        let value = if source.contains("{{") {
            ctx.render_strings(
                &self.inner.renderer,
                vec![("cohort_key".into(), source.to_string())],
                now,
            )
            .await
            .ok()
            .and_then(|mut v| v.pop())
        } else {
            hark_core::conditions::resolve_path(&ctx.variables(now), source).map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
        };
        value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| ctx.run.recipient_id.clone())
    }
}

/// How a run that continues a closed batch goes on.
enum AfterBatch {
    /// On its own version, where it is.
    Same,
    /// On the newest version, at the node after the same batch step.
    Switched(Arc<WorkflowDefinition>, usize),
    /// The workflow was deactivated while the batch was open: the run ends.
    Stop,
}

impl Engine {
    /// A batch continuation honours the workflow's current status, and in `latest` mode
    /// its newest committed version. Runs once: the commit moves the run out of `queued`.
    async fn continue_after_batch(
        &self,
        job: &ClaimedJob,
        ctx: &mut RunContext,
    ) -> Result<AfterBatch, StoreError> {
        let now = self.inner.clock.now_ms();
        let run = &ctx.run;
        let committed = self
            .inner
            .store
            .committed_workflow(&run.environment_id, &run.workflow_key)
            .await?;
        if committed.as_ref().is_some_and(|c| !c.active) {
            let ev = event(
                "workflow_run_completed",
                true,
                None,
                json!({"reason": "workflow_inactive"}),
                now,
            );
            let commit = ctx.finish(now, vec![ev], false);
            self.submit_step(job, commit).await?;
            return Ok(AfterBatch::Stop);
        }
        let latest_mode = ctx
            .state
            .pointer("/batch/version_latest")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let step_ref = ctx
            .state
            .pointer("/batch/step_ref")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(latest) = committed.filter(|c| latest_mode && c.version != run.workflow_version)
        else {
            return Ok(AfterBatch::Same);
        };
        let Ok(definition) = self
            .pinned_workflow(&run.environment_id, &run.workflow_key, latest.version)
            .await?
        else {
            return Ok(AfterBatch::Same);
        };
        let target = definition
            .find_step(&step_ref)
            .and_then(|(index, step)| match &step.kind {
                StepKind::Batch(s) if s.version_latest => Some(index + 1),
                _ => None,
            });
        let Some(cursor) = target else {
            return Ok(AfterBatch::Same);
        };
        let mut commit = ctx.commit(now);
        commit.next_cursor = cursor as i64;
        commit.workflow_version = Some(latest.version);
        commit.events.push(event(
            "batch_continues_on_latest_version",
            true,
            Some((&step_ref, "batch")),
            json!({"from_version": run.workflow_version, "to_version": latest.version}),
            now,
        ));
        if !self.submit_step(job, commit).await? {
            return Ok(AfterBatch::Stop);
        }
        ctx.run.workflow_version = latest.version;
        ctx.run.step_cursor = cursor as i64;
        ctx.workflow = definition.clone();
        Ok(AfterBatch::Switched(definition, cursor))
    }
}

fn finish_unrunnable(run: &RecipientRun, data: Value, now: i64) -> StepCommit {
    StepCommit {
        run_id: run.id.clone(),
        next_cursor: run.step_cursor,
        events: vec![event("workflow_run_failed", false, None, data, now)],
        finished: Some(RunStatus::Completed),
        error: true,
        now,
        ..StepCommit::default()
    }
}
