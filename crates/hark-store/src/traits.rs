//! The store's domain traits, composed into [`Store`]. Each backend implements all of them
//! with the same behaviour; `tests/contract.rs` runs one suite against every backend.

use async_trait::async_trait;
use hark_core::Millis;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::model::*;

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait EnvironmentStore {
    /// Creates `development` and `production` if they are missing. Idempotent.
    async fn ensure_default_environments(&self, now: Millis) -> StoreResult<()>;
    async fn environment_by_slug(&self, slug: &str) -> StoreResult<Option<Environment>>;
    async fn set_enhanced_security(&self, environment_id: &str, on: bool) -> StoreResult<()>;
    /// Stores the SHA-256 of a new key.
    async fn create_api_key(
        &self,
        environment_id: &str,
        kind: KeyKind,
        key_hash: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(Environment, KeyKind)>>;
    async fn create_service_token(&self, token_hash: &str, now: Millis) -> StoreResult<()>;
    async fn service_token_exists(&self, token_hash: &str) -> StoreResult<bool>;
    async fn add_signing_key(
        &self,
        environment_id: &str,
        public_key_pem: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn signing_keys(&self, environment_id: &str) -> StoreResult<Vec<String>>;
    /// The server-wide secret called `name`: `candidate` is stored if there is none yet,
    /// and the stored one is returned, so nodes starting together agree on one secret.
    async fn server_secret(&self, name: &str, candidate: &str, now: Millis) -> StoreResult<String>;
}

#[async_trait]
pub trait UserStore {
    /// Creates or updates a user. Given properties replace stored ones; a `null` removes it.
    async fn upsert_user(
        &self,
        environment_id: &str,
        id: &str,
        properties: &Map<String, Value>,
        now: Millis,
    ) -> StoreResult<UserRecord>;
    async fn get_user(&self, environment_id: &str, id: &str) -> StoreResult<Option<UserRecord>>;
    /// The users among `ids` that exist, in no particular order (one query).
    async fn get_users(&self, environment_id: &str, ids: &[String])
        -> StoreResult<Vec<UserRecord>>;
    async fn delete_user(&self, environment_id: &str, id: &str) -> StoreResult<bool>;
    async fn list_users(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<UserRecord>>;
    /// Merges `from_id` into `id`: properties of `id` win, the messages, runs and message
    /// events of user `from_id` move to `id` (an object of the same id keeps its own), and
    /// `from_id` is deleted. `None` if either user is missing.
    async fn merge_users(
        &self,
        environment_id: &str,
        id: &str,
        from_id: &str,
        now: Millis,
    ) -> StoreResult<Option<UserRecord>>;
    /// Identifies many users in one transaction and records the bulk operation.
    async fn bulk_identify(
        &self,
        environment_id: &str,
        users: &[(String, Map<String, Value>)],
        now: Millis,
    ) -> StoreResult<BulkOperation>;
    async fn bulk_delete_users(
        &self,
        environment_id: &str,
        ids: &[String],
        now: Millis,
    ) -> StoreResult<BulkOperation>;
    /// Records a completed bulk operation of `rows` rows (for bulk endpoints whose work
    /// is done through other store calls).
    async fn record_bulk_operation(
        &self,
        environment_id: &str,
        name: &str,
        rows: i64,
        now: Millis,
    ) -> StoreResult<BulkOperation>;
    async fn get_bulk_operation(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<BulkOperation>>;
}

#[async_trait]
pub trait WorkflowStore {
    /// Saves the draft; with `commit`, also stores it as a new version that triggers use.
    async fn save_workflow(
        &self,
        environment_id: &str,
        key: &str,
        definition: &Value,
        commit: bool,
        now: Millis,
    ) -> StoreResult<WorkflowRecord>;
    async fn get_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<WorkflowRecord>>;
    async fn list_workflows(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<WorkflowRecord>>;
    async fn set_workflow_active(
        &self,
        environment_id: &str,
        key: &str,
        active: bool,
        now: Millis,
    ) -> StoreResult<Option<WorkflowRecord>>;
    async fn committed_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<CommittedWorkflow>>;
    /// The committed version of a workflow and whether it is active, without its
    /// definition (which callers keep parsed per version).
    async fn committed_version(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<(i64, bool)>>;
    async fn workflow_version(
        &self,
        environment_id: &str,
        key: &str,
        version: i64,
    ) -> StoreResult<Option<Value>>;
}

#[async_trait]
pub trait RunStore {
    /// Stores triggers durably in one transaction (group commit): per trigger the
    /// idempotency key, inline users, the workflow run, one recipient run and one job per
    /// recipient. Each trigger has its own outcome; a failing one is rolled back alone.
    /// Nothing is durable unless the whole call returns `Ok`. The runs' jobs of a trigger
    /// with a `lease` are written held by it and returned with its outcome.
    async fn create_triggers_with_jobs(
        &self,
        triggers: &[TriggerWrite],
    ) -> StoreResult<Vec<StoreResult<Written<TriggerOutcome>>>>;

    /// [`RunStore::create_triggers_with_jobs`], outcomes only.
    async fn create_triggers(
        &self,
        triggers: &[TriggerWrite],
    ) -> StoreResult<Vec<StoreResult<TriggerOutcome>>> {
        Ok(self
            .create_triggers_with_jobs(triggers)
            .await?
            .into_iter()
            .map(|o| o.map(|w| w.outcome))
            .collect())
    }

    /// Stores one trigger durably; see [`RunStore::create_triggers`].
    async fn create_trigger(&self, trigger: &TriggerWrite) -> StoreResult<TriggerOutcome> {
        self.create_triggers(std::slice::from_ref(trigger))
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Corrupt {
                    operation: "create trigger",
                    detail: "no outcome for the trigger".into(),
                })
            })
    }
    /// Cancels unfinished runs with this cancellation key (for these recipients only when
    /// given) and drops their pending jobs. Returns how many runs were cancelled.
    async fn cancel_runs(
        &self,
        environment_id: &str,
        workflow_key: &str,
        cancellation_key: &str,
        recipients: Option<&[String]>,
        now: Millis,
    ) -> StoreResult<u64>;
    async fn get_recipient_run(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<RecipientRun>>;
    async fn list_recipient_runs(
        &self,
        environment_id: &str,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<RecipientRun>>;
    async fn run_events(&self, run_id: &str) -> StoreResult<Vec<RunEvent>>;
}

#[async_trait]
pub trait MessageStore {
    async fn get_message(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<MessageRecord>>;
    async fn list_messages(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<MessageRecord>>;
    async fn count_feed(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
    ) -> StoreResult<FeedCounts>;
    /// One read of a user's feed: the page of `filter`, the badge counts of
    /// `count_filter` (each what `list_messages` and `count_feed` return) and the user
    /// `user_id`, in one statement.
    async fn read_feed(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
        count_filter: &MessageFilter,
        page: &PageRequest,
        user_id: &str,
    ) -> StoreResult<FeedRead>;
    /// Applies an engagement change to each message (in this environment) and records an
    /// event for every message whose state changed. Returns the messages after the change.
    async fn set_engagement(
        &self,
        environment_id: &str,
        ids: &[String],
        change: Engagement,
        now: Millis,
    ) -> StoreResult<Vec<MessageRecord>>;
    /// A message's events, newest first.
    async fn message_events(
        &self,
        environment_id: &str,
        message_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<MessageEvent>>;
    /// A message's delivery attempts, newest first.
    async fn delivery_logs(
        &self,
        environment_id: &str,
        message_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<DeliveryLog>>;
}

#[async_trait]
pub trait JobStore {
    /// Leases up to `limit` jobs due at `now` for `lease_ms`.
    async fn claim_due_jobs(
        &self,
        now: Millis,
        limit: i64,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>>;
    /// Loads a run for the worker that holds its job (any environment).
    async fn load_run_for_job(&self, run_id: &str) -> StoreResult<Option<RecipientRun>>;
    /// The runs of a claimed batch of jobs in one read (those that exist, in any order).
    async fn load_runs_for_jobs(&self, run_ids: &[String]) -> StoreResult<Vec<RecipientRun>>;
    /// Commits step outcomes of many jobs in one transaction (group commit). For each:
    /// `false` (and nothing written for it) when its job lost the lease; when its run
    /// finishes, its job is deleted. A delivery job written for a step with a
    /// `delivery_lease` is returned with its outcome, as the writer holds it.
    async fn commit_steps_with_jobs(
        &self,
        steps: &[(ClaimedJob, StepCommit)],
    ) -> StoreResult<Vec<StoreResult<Written<bool>>>>;

    /// [`JobStore::commit_steps_with_jobs`], outcomes only.
    async fn commit_steps(
        &self,
        steps: &[(ClaimedJob, StepCommit)],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        Ok(self
            .commit_steps_with_jobs(steps)
            .await?
            .into_iter()
            .map(|o| o.map(|w| w.outcome))
            .collect())
    }

    /// Commits one step's outcome; see [`JobStore::commit_steps`].
    async fn commit_step(&self, job: &ClaimedJob, step: &StepCommit) -> StoreResult<bool> {
        self.commit_steps(&[(job.clone(), step.clone())])
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Corrupt {
                    operation: "commit step",
                    detail: "no outcome for the step".into(),
                })
            })
    }
    /// Commits delivery attempts of many jobs in one transaction (group commit). For
    /// each: `false` (and nothing written for it) when its job lost the lease; otherwise
    /// the message's status, logs and event, and the job rescheduled or deleted.
    async fn commit_deliveries(
        &self,
        deliveries: &[(ClaimedJob, DeliveryCommit)],
    ) -> StoreResult<Vec<StoreResult<bool>>>;
    /// Commits one delivery attempt; see [`JobStore::commit_deliveries`].
    async fn commit_delivery(
        &self,
        job: &ClaimedJob,
        delivery: &DeliveryCommit,
    ) -> StoreResult<bool> {
        self.commit_deliveries(&[(job.clone(), delivery.clone())])
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Corrupt {
                    operation: "commit delivery",
                    detail: "no outcome for the delivery".into(),
                })
            })
    }
    /// Deletes the job if `job` still holds its lease.
    async fn complete_job(&self, job: &ClaimedJob) -> StoreResult<bool>;
    async fn load_message_for_job(&self, message_id: &str) -> StoreResult<Option<MessageRecord>>;
    /// The messages of a claimed batch of delivery jobs in one read (those that exist, in
    /// any order).
    async fn load_messages_for_jobs(
        &self,
        message_ids: &[String],
    ) -> StoreResult<Vec<MessageRecord>>;
    /// Pending jobs (for tests and metrics).
    async fn pending_job_count(&self) -> StoreResult<i64>;
    /// Jobs due at `now` and the oldest one's due time, in one query (for metrics).
    async fn job_queue_stats(&self, now: Millis) -> StoreResult<JobQueueStats>;
    /// The first `limit` distinct instants after `now` at which jobs come due (a leased
    /// job's is its lease's expiry), earliest first.
    async fn upcoming_due_times(&self, now: Millis, limit: i64) -> StoreResult<Vec<Millis>>;
}

/// Batches, throttles and waits: the steps whose outcome depends on other runs. Every
/// method is fenced by the job's lease and returns `None` when the lease was lost.
#[async_trait]
pub trait FlowStore {
    /// Adds the run to the open batch for its key, or opens one, atomically with the run's
    /// progress. Joined runs (and an accumulating opener) pause until the batch closes.
    async fn join_batch(
        &self,
        job: &ClaimedJob,
        join: &BatchJoin,
    ) -> StoreResult<Option<BatchJoined>>;
    /// Runs a due `close_batch` job: closes the window (or reschedules it when it moved),
    /// hands the activities to the first remaining activity's run and wakes that run.
    async fn close_batch(&self, job: &ClaimedJob, now: Millis) -> StoreResult<Option<BatchClosed>>;
    /// Counts the run against the throttle window atomically; `Some(true)` when it passed
    /// (the run moves on), `Some(false)` when throttled (the run completes).
    async fn hit_throttle(&self, job: &ClaimedJob, hit: &ThrottleHit) -> StoreResult<Option<bool>>;
    /// Events recorded for an open wait, oldest first.
    async fn wait_candidates(&self, wait_id: &str) -> StoreResult<Vec<WaitCandidate>>;
}

#[async_trait]
pub trait ObjectStore {
    /// Creates or updates an object. Given properties replace stored ones; `null` removes.
    async fn upsert_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
        properties: &Map<String, Value>,
        now: Millis,
    ) -> StoreResult<ObjectRecord>;
    async fn get_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<ObjectRecord>>;
    /// Deletes the object and its documents; `false` when it did not exist.
    async fn delete_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
    ) -> StoreResult<bool>;
    /// A collection's objects in creation order.
    async fn list_objects(
        &self,
        environment_id: &str,
        collection: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ObjectRecord>>;
    /// Upserts many objects in one transaction and records the bulk operation.
    async fn bulk_set_objects(
        &self,
        environment_id: &str,
        collection: &str,
        objects: &[(String, Map<String, Value>)],
        now: Millis,
    ) -> StoreResult<BulkOperation>;
    async fn bulk_delete_objects(
        &self,
        environment_id: &str,
        collection: &str,
        ids: &[String],
        now: Millis,
    ) -> StoreResult<BulkOperation>;
}

/// Streaming a trigger to an object's subscribers, page by page, surviving crashes.
#[async_trait]
pub trait FanOutStore {
    async fn load_fanout(&self, id: &str) -> StoreResult<Option<FanOut>>;
    /// Creates runs for one page of subscribers (deduplicated per trigger, the actor
    /// skipped, objects fanned out once more up to depth 2) and moves the fan-out's
    /// cursor past them, in one fenced transaction. An empty page finishes the fan-out.
    /// Returns the runs created (`None` when `job` lost its lease), with their jobs when
    /// they were written leased to the caller's workers with `lease`.
    async fn fan_out_page(
        &self,
        job: &ClaimedJob,
        fanout: &FanOut,
        page: &[SubscriptionRecord],
        lease: Option<&JobLease>,
        now: Millis,
    ) -> StoreResult<Option<Written<usize>>>;
}

#[async_trait]
pub trait SubscriptionStore {
    /// Subscribes each recipient to the object (updating the properties of existing
    /// subscriptions). Fails with `NotFound` semantics left to the caller: the object must
    /// exist.
    async fn add_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        recipients: &[RecipientKey],
        properties: &Value,
        now: Millis,
    ) -> StoreResult<Vec<SubscriptionRecord>>;
    /// Removes the recipients' subscriptions; returns the ones that existed.
    async fn delete_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        recipients: &[RecipientKey],
    ) -> StoreResult<Vec<SubscriptionRecord>>;
    /// An object's subscriptions ordered by recipient, after `after` (exclusive), at most
    /// `limit`: the page a fan-out streams.
    async fn object_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        after: Option<&RecipientKey>,
        limit: i64,
    ) -> StoreResult<Vec<SubscriptionRecord>>;
    /// What a recipient is subscribed to, ordered by object.
    async fn recipient_subscriptions(
        &self,
        environment_id: &str,
        recipient: &RecipientKey,
        after: Option<&(String, String)>,
        limit: i64,
    ) -> StoreResult<Vec<SubscriptionRecord>>;
}

/// Static audiences: members are users, optionally scoped to a tenant.
#[async_trait]
pub trait AudienceStore {
    async fn add_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        members: &[(String, Option<String>)],
        now: Millis,
    ) -> StoreResult<()>;
    async fn remove_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        members: &[(String, Option<String>)],
    ) -> StoreResult<()>;
    /// Members in the order they were added, after `after` (a previous page's last
    /// `(added_at, user_id, tenant)`).
    async fn list_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        after: Option<&(Millis, String, String)>,
        limit: i64,
    ) -> StoreResult<Vec<AudienceMember>>;
    /// The audiences a user belongs to, for a run in `tenant` (membership without a
    /// tenant counts everywhere).
    async fn audiences_of(
        &self,
        environment_id: &str,
        user_id: &str,
        tenant: Option<&str>,
    ) -> StoreResult<Vec<String>>;
    /// Creates or updates an audience definition; an archived one is restored. The
    /// stored `audience_type` and `created_at` of an existing audience are kept.
    async fn upsert_audience(
        &self,
        environment_id: &str,
        audience: &AudienceDefinition,
        now: Millis,
    ) -> StoreResult<AudienceDefinition>;
    /// An audience definition, archived or not.
    async fn get_audience(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<AudienceDefinition>>;
    /// Unarchived audience definitions ordered by key, after `after` (a previous page's
    /// last key).
    async fn list_audiences(
        &self,
        environment_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<AudienceDefinition>>;
    /// Archives an audience; false when there is no unarchived audience with that key.
    async fn archive_audience(
        &self,
        environment_id: &str,
        key: &str,
        now: Millis,
    ) -> StoreResult<bool>;
    /// Every unarchived dynamic audience, for membership checks.
    async fn dynamic_audiences(&self, environment_id: &str)
        -> StoreResult<Vec<AudienceDefinition>>;
}

/// Email layouts, per environment. Hark has no commits for layouts: a write takes
/// effect at once.
#[async_trait]
pub trait EmailLayoutStore {
    /// Creates or updates a layout; an existing layout keeps its `created_at`.
    async fn upsert_email_layout(
        &self,
        environment_id: &str,
        layout: &EmailLayout,
        now: Millis,
    ) -> StoreResult<EmailLayout>;
    async fn get_email_layout(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<EmailLayout>>;
    /// Layouts ordered by key, after `after` (a previous page's last key).
    async fn list_email_layouts(
        &self,
        environment_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<EmailLayout>>;
}

/// Per-recipient JSON documents (preference sets, channel data). The store keeps them
/// as given; their meaning lives in `hark-core`.
#[async_trait]
pub trait DocumentStore {
    async fn get_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
    ) -> StoreResult<Option<Document>>;
    /// Every document of one kind of `owner`, by key.
    async fn list_documents(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
    ) -> StoreResult<Vec<Document>>;
    async fn put_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
        data: &Value,
        now: Millis,
    ) -> StoreResult<Document>;
    async fn delete_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
    ) -> StoreResult<bool>;
    /// Every document of one kind of each of `owners`, as `(owner key, document)` pairs
    /// ordered by owner key then document key: one read for a whole page of recipients.
    async fn list_documents_of(
        &self,
        environment_id: &str,
        owners: &[Owner],
        kind: DocumentKind,
    ) -> StoreResult<Vec<(String, Document)>>;
    /// Writes the same document under `key` for every owner, replacing what each had, and
    /// records a completed bulk operation named `bulk_name`, all in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn bulk_put_documents(
        &self,
        environment_id: &str,
        owners: &[Owner],
        kind: DocumentKind,
        key: &str,
        data: &Value,
        bulk_name: &str,
        now: Millis,
    ) -> StoreResult<BulkOperation>;
}

/// What providers report about messages after accepting them (status callbacks).
#[async_trait]
pub trait ProviderStatusStore {
    /// The message of channel `channel_key` that its provider knows as
    /// `provider_message_id` (recorded when the provider accepted it), in any environment:
    /// a callback is tied to a channel, not to an API key.
    async fn message_by_provider_id(
        &self,
        channel_key: &str,
        provider_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>>;
    /// Moves the message to the reported status and records the matching `message.*`
    /// event, in one transaction. Nothing changes (and `false` is returned) when the
    /// message already has that status, or a status no callback may leave: `bounced`,
    /// `undelivered` (the provider's last word) or `not_sent` (never handed over). So
    /// a repeated or out-of-order callback is harmless.
    async fn apply_provider_status(&self, update: &ProviderStatusUpdate) -> StoreResult<bool>;
}

/// Everything Hark persists. Implemented by the SQLite and PostgreSQL backends.
pub trait Store:
    EnvironmentStore
    + UserStore
    + WorkflowStore
    + RunStore
    + MessageStore
    + JobStore
    + FlowStore
    + ObjectStore
    + DocumentStore
    + SubscriptionStore
    + FanOutStore
    + AudienceStore
    + EmailLayoutStore
    + ProviderStatusStore
    + Send
    + Sync
{
    /// `sqlite` or `postgres`.
    fn backend_name(&self) -> &'static str;

    /// True when all writes go through one connection (SQLite): concurrent writers are
    /// then better served by group commit than by waiting in line.
    fn single_writer(&self) -> bool;

    /// The stream of in-app feed messages committed by any node sharing the database,
    /// for realtime sockets. See `feed_events`.
    fn feed_events(&self) -> &crate::feed_events::FeedEventHub;

    /// Wake-ups shared between nodes (PostgreSQL); `None` where every worker is in
    /// this process (SQLite), which the engine's in-process wake already reaches.
    fn job_wakeups(&self) -> Option<std::sync::Arc<crate::wakeups::JobWakeups>>;

    /// Notified (one permit, for the one worker loop of this process) after a commit
    /// that made jobs already in the table, held by nobody, due now: runs whose waits an
    /// event reached (a message event, a run started or completed), a batch that filled
    /// up and closes at once. Other nodes hear of it through [`Store::job_wakeups`].
    fn jobs_made_due(&self) -> &tokio::sync::Notify;
}
