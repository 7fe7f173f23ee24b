//! Records as the store hands them out. These are storage shapes, not wire shapes: the
//! API layer turns them into Knock's JSON.

pub use hark_core::workflow::TriggerFrequency;
use hark_core::Millis;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// When on, public-key requests must carry a signed user token.
    pub enhanced_security: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Public => "public",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    /// Every property of the user except `id`, custom ones included.
    pub properties: Map<String, Value>,
    pub inserted_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub key: String,
    pub active: bool,
    /// The latest saved definition (a `WorkflowRequest` body), committed or not.
    pub draft: Value,
    /// The version triggers run, if the workflow was ever committed.
    pub committed_version: Option<i64>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The committed definition a trigger pins its runs to.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedWorkflow {
    pub key: String,
    pub version: i64,
    pub active: bool,
    pub definition: Value,
}

/// A page request in store terms: an opaque cursor and a size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub before: Option<String>,
    pub page_size: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub entries: Vec<T>,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// Everything one trigger writes, in one transaction.
#[derive(Debug, Clone)]
pub struct TriggerWrite {
    pub environment_id: String,
    pub workflow_key: String,
    pub workflow_version: i64,
    pub workflow_run_id: String,
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub data: Value,
    pub cancellation_key: Option<String>,
    pub recipients: Vec<String>,
    /// Users to identify before the run starts (inline recipients and actor).
    pub inline_users: Vec<(String, Map<String, Value>)>,
    /// Objects to set before the run starts, as `(collection, id, properties)` (an inline
    /// tenant).
    pub inline_objects: Vec<(String, String, Map<String, Value>)>,
    /// Documents to write before the run starts, as `(owner, kind, key, data)`: inline
    /// `preferences` of trigger recipients, already merged with what was stored.
    pub inline_documents: Vec<(Owner, DocumentKind, String, Value)>,
    /// Objects `(collection, id)` whose subscribers the trigger fans out to.
    pub fan_outs: Vec<(String, String)>,
    pub idempotency: Option<IdempotencyClaim>,
    /// Each run's initial state (the trigger's `settings`).
    pub state: Value,
    pub frequency: TriggerFrequency,
    /// When set, the recipient runs' jobs are written already leased to the node that
    /// writes them, which runs them itself (see [`JobLease`]).
    pub lease: Option<JobLease>,
    pub now: Millis,
}

#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    pub request_hash: String,
    /// The response to store and replay for this key.
    pub response: Value,
    /// Replays are honoured only for keys stored after this instant.
    pub not_before: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    Accepted,
    Replayed(Value),
    IdempotencyKeyReused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Processing,
    Paused,
    Completed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Processing => "processing",
            RunStatus::Paused => "paused",
            RunStatus::Completed => "completed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => RunStatus::Queued,
            "processing" => RunStatus::Processing,
            "paused" => RunStatus::Paused,
            "completed" => RunStatus::Completed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecipientRun {
    pub id: String,
    pub environment_id: String,
    pub workflow_run_id: String,
    pub workflow_key: String,
    pub workflow_version: i64,
    pub recipient_id: String,
    /// The object's collection when the recipient is an object, `None` for a user.
    pub recipient_collection: Option<String>,
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub data: Value,
    pub cancellation_key: Option<String>,
    pub status: RunStatus,
    /// Index of the next node of the workflow's program to run.
    pub step_cursor: i64,
    /// What the run's steps built up: trigger `settings`, `batch` results, `refs` outputs,
    /// fetch attempts and the open wait.
    pub state: Value,
    pub error_count: i64,
    pub inserted_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub id: String,
    pub event: String,
    /// `ok` or `error`.
    pub status: String,
    pub step_ref: Option<String>,
    pub step_type: Option<String>,
    pub attempt: i64,
    pub data: Value,
    pub inserted_at: Millis,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub workflow_key: Option<String>,
    /// With `recipient_collection`: a recipient is the pair; `None` means a user.
    pub recipient_id: Option<String>,
    pub recipient_collection: Option<String>,
    pub workflow_run_id: Option<String>,
    pub status: Vec<String>,
    pub tenant: Option<String>,
    /// Runs that recorded an error (`Some(true)`) or none (`Some(false)`).
    pub has_errors: Option<bool>,
    /// Runs created at or after / at or before these instants.
    pub inserted_at_gte: Option<Millis>,
    pub inserted_at_lte: Option<Millis>,
}

/// A message to create. Its uniqueness key is `(recipient_run_id, step_ref)`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub environment_id: String,
    pub recipient_run_id: String,
    pub workflow_run_id: String,
    pub step_ref: String,
    pub workflow_key: String,
    pub workflow_version: i64,
    pub categories: Vec<String>,
    pub channel_key: String,
    pub channel_type: String,
    pub recipient_id: String,
    /// The object's collection when the recipient is an object, `None` for a user.
    pub recipient_collection: Option<String>,
    pub actors: Vec<String>,
    pub tenant: Option<String>,
    pub status: String,
    pub content: Value,
    pub data: Value,
    /// After a batch: `{activities, total_activities, total_actors}`.
    pub batch: Option<Value>,
    pub now: Millis,
}

impl NewMessage {
    /// The message as the row its insert writes reads back.
    pub fn as_written(&self) -> MessageRecord {
        MessageRecord {
            id: self.id.clone(),
            environment_id: self.environment_id.clone(),
            recipient_run_id: self.recipient_run_id.clone(),
            workflow_run_id: self.workflow_run_id.clone(),
            step_ref: self.step_ref.clone(),
            workflow_key: self.workflow_key.clone(),
            workflow_version: self.workflow_version,
            categories: self.categories.clone(),
            channel_key: self.channel_key.clone(),
            channel_type: self.channel_type.clone(),
            recipient_id: self.recipient_id.clone(),
            recipient_collection: self.recipient_collection.clone(),
            actors: self.actors.clone(),
            tenant: self.tenant.clone(),
            status: self.status.clone(),
            content: self.content.clone(),
            data: self.data.clone(),
            seen_at: None,
            read_at: None,
            interacted_at: None,
            link_clicked_at: None,
            archived_at: None,
            inserted_at: self.now,
            updated_at: self.now,
            batch: self.batch.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub environment_id: String,
    pub recipient_run_id: String,
    pub workflow_run_id: String,
    pub step_ref: String,
    pub workflow_key: String,
    pub workflow_version: i64,
    pub categories: Vec<String>,
    pub channel_key: String,
    pub channel_type: String,
    pub recipient_id: String,
    /// The object's collection when the recipient is an object, `None` for a user.
    pub recipient_collection: Option<String>,
    pub actors: Vec<String>,
    pub tenant: Option<String>,
    pub status: String,
    pub content: Value,
    pub data: Value,
    pub seen_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub interacted_at: Option<Millis>,
    pub link_clicked_at: Option<Millis>,
    pub archived_at: Option<Millis>,
    pub inserted_at: Millis,
    pub updated_at: Millis,
    /// After a batch: `{activities, total_activities, total_actors}`.
    pub batch: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchivedFilter {
    Exclude,
    Include,
    Only,
}

/// Filters shared by message lists and the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFilter {
    pub recipient_id: Option<String>,
    /// With `recipient_id`: the object collection the recipient is in; `None` matches
    /// users only.
    pub recipient_collection: Option<String>,
    pub channel_key: Option<String>,
    pub workflow_key: Option<String>,
    pub workflow_run_id: Option<String>,
    pub recipient_run_id: Option<String>,
    pub tenant: Option<String>,
    pub has_tenant: Option<bool>,
    pub statuses: Vec<String>,
    /// `seen`, `unseen`, `read`, `unread`, `interacted`, `archived`, `unarchived`, `link_clicked`.
    pub engagement: Vec<String>,
    pub archived: ArchivedFilter,
    pub categories: Vec<String>,
    pub message_ids: Vec<String>,
    /// Each key of the trigger data must equal this value (top-level keys).
    pub trigger_data: Vec<(String, Value)>,
    pub inserted_at_gte: Option<Millis>,
    pub inserted_at_lte: Option<Millis>,
    pub inserted_at_gt: Option<Millis>,
    pub inserted_at_lt: Option<Millis>,
}

impl Default for MessageFilter {
    fn default() -> Self {
        Self {
            recipient_id: None,
            recipient_collection: None,
            channel_key: None,
            workflow_key: None,
            workflow_run_id: None,
            recipient_run_id: None,
            tenant: None,
            has_tenant: None,
            statuses: Vec::new(),
            engagement: Vec::new(),
            archived: ArchivedFilter::Include,
            categories: Vec::new(),
            message_ids: Vec::new(),
            trigger_data: Vec::new(),
            inserted_at_gte: None,
            inserted_at_lte: None,
            inserted_at_gt: None,
            inserted_at_lt: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedCounts {
    pub total: i64,
    pub unread: i64,
    pub unseen: i64,
}

/// A feed as the in-app feed route shows it: a page, the badge counts and the recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRead {
    pub counts: FeedCounts,
    pub page: Page<MessageRecord>,
    /// The recipient's stored user, `None` when there is none.
    pub user: Option<UserRecord>,
}

/// Engagement changes the API can make to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Seen,
    Unseen,
    Read,
    Unread,
    Archived,
    Unarchived,
    Interacted,
    LinkClicked,
}

impl Engagement {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "seen" => Engagement::Seen,
            "unseen" => Engagement::Unseen,
            "read" => Engagement::Read,
            "unread" => Engagement::Unread,
            "archived" => Engagement::Archived,
            "unarchived" => Engagement::Unarchived,
            "interacted" => Engagement::Interacted,
            "link_clicked" => Engagement::LinkClicked,
            _ => return None,
        })
    }

    /// The column this change writes, and whether it sets (now) or clears it.
    pub fn column(self) -> (&'static str, bool) {
        match self {
            Engagement::Seen => ("seen_at", true),
            Engagement::Unseen => ("seen_at", false),
            Engagement::Read => ("read_at", true),
            Engagement::Unread => ("read_at", false),
            Engagement::Archived => ("archived_at", true),
            Engagement::Unarchived => ("archived_at", false),
            Engagement::Interacted => ("interacted_at", true),
            Engagement::LinkClicked => ("link_clicked_at", true),
        }
    }

    /// The `MessageEvent.type` recorded for this change.
    pub fn event_type(self) -> &'static str {
        match self {
            Engagement::Seen => "message.seen",
            Engagement::Unseen => "message.unseen",
            Engagement::Read => "message.read",
            Engagement::Unread => "message.unread",
            Engagement::Archived => "message.archived",
            Engagement::Unarchived => "message.unarchived",
            Engagement::Interacted => "message.interacted",
            Engagement::LinkClicked => "message.link_clicked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub id: String,
    pub message_id: String,
    pub recipient_id: String,
    pub event_type: String,
    pub data: Value,
    pub inserted_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryLog {
    pub id: String,
    pub environment_id: String,
    pub message_id: String,
    pub service_name: String,
    pub request: Value,
    pub response: Value,
    pub inserted_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Advance a recipient run; `ref_id` is the recipient run id.
    AdvanceRun,
    /// Deliver a message through its channel; `ref_id` is the message id.
    DeliverMessage,
    /// Close a batch window when due; `ref_id` is the batch id.
    CloseBatch,
    /// Stream an object's subscribers into runs; `ref_id` is the fan-out id.
    FanOut,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::AdvanceRun => "advance_run",
            JobKind::DeliverMessage => "deliver_message",
            JobKind::CloseBatch => "close_batch",
            JobKind::FanOut => "fan_out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "advance_run" => Some(JobKind::AdvanceRun),
            "deliver_message" => Some(JobKind::DeliverMessage),
            "close_batch" => Some(JobKind::CloseBatch),
            "fan_out" => Some(JobKind::FanOut),
            _ => None,
        }
    }
}

/// A job a worker holds. `lease` fences every write the worker makes on its behalf: once
/// the lease expired and another worker claimed the job, the old lease is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: String,
    pub environment_id: String,
    pub kind: JobKind,
    pub ref_id: String,
    /// How many times the job was claimed, this claim included.
    pub attempts: i64,
    pub lease: String,
    /// The row the job works on, as its writer just wrote it, when the job was handed
    /// over with it (see [`JobLease`]); `None` when the worker reads it.
    pub written: Option<WrittenRow>,
}

impl ClaimedJob {
    /// The run this `advance_run` job was handed over with.
    pub fn written_run(&self) -> Option<&std::sync::Arc<RecipientRun>> {
        match &self.written {
            Some(WrittenRow::Run(run)) => Some(run),
            _ => None,
        }
    }

    /// The message this `deliver_message` job was handed over with.
    pub fn written_message(&self) -> Option<&std::sync::Arc<MessageRecord>> {
        match &self.written {
            Some(WrittenRow::Message(message)) => Some(message),
            _ => None,
        }
    }
}

/// A row a job's writer wrote in the commit that wrote the job, handed to the worker
/// with the job; equal, field for field, to what a read of it right after the commit
/// returns.
#[derive(Debug, Clone, PartialEq)]
pub enum WrittenRow {
    /// The run an `advance_run` job advances.
    Run(std::sync::Arc<RecipientRun>),
    /// The message a `deliver_message` job delivers.
    Message(std::sync::Arc<MessageRecord>),
}

/// A claim made when a job is written instead of later: the node writing the job holds it
/// from the start and runs it at once, without a claim round trip. The job is written
/// with `lease` and `run_at = expires_at`, as a claim would leave it, so fencing and
/// take-over after a crash work unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLease {
    pub lease: String,
    /// When another node may take the job over.
    pub expires_at: Millis,
}

impl JobLease {
    /// The job as its writer holds it (counted as claimed once).
    pub fn job(
        &self,
        id: String,
        environment_id: String,
        kind: JobKind,
        ref_id: String,
    ) -> ClaimedJob {
        ClaimedJob {
            id,
            environment_id,
            kind,
            ref_id,
            attempts: 1,
            lease: self.lease.clone(),
            written: None,
        }
    }
}

/// What a group commit wrote for one item, and the jobs it wrote leased to the writer
/// (see [`JobLease`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub outcome: T,
    pub leased_jobs: Vec<ClaimedJob>,
}

impl<T> Written<T> {
    pub fn without_jobs(outcome: T) -> Self {
        Written {
            outcome,
            leased_jobs: Vec::new(),
        }
    }
}

/// The outcome of one step, committed atomically with the run's progress.
#[derive(Debug, Clone, Default)]
pub struct StepCommit {
    pub run_id: String,
    pub next_cursor: i64,
    pub message: Option<NewMessage>,
    /// Enqueue a delivery job for `message` (not needed for the in-app feed).
    pub enqueue_delivery: bool,
    /// When set, that delivery job is written leased to the committing node.
    pub delivery_lease: Option<JobLease>,
    pub events: Vec<RunEvent>,
    /// Set when the run ends with this step.
    pub finished: Option<RunStatus>,
    pub error: bool,
    /// Replaces the run's `data`.
    pub data: Option<Value>,
    /// Replaces the run's state.
    pub state: Option<Value>,
    /// Pauses the run: its job becomes due again at this instant.
    pub resume_at: Option<Millis>,
    /// Workflows this step starts, stored in the same transaction.
    pub triggers: Vec<TriggerWrite>,
    pub new_wait: Option<NewWait>,
    /// Ends a wait (`matched`, `expired`) and drops its candidate events.
    pub close_wait: Option<(String, String)>,
    /// Candidate events that were evaluated and did not match.
    pub drop_wait_events: Vec<String>,
    /// Moves the run to another committed version of its workflow (a batch in `latest`
    /// mode continuing on the newest version).
    pub workflow_version: Option<i64>,
    pub now: Millis,
}

/// A wait for a message or workflow event of the run's recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWait {
    pub id: String,
    pub environment_id: String,
    pub recipient_id: String,
    /// `message` or `workflow`.
    pub event_type: String,
    pub event_key: String,
    /// The workflow whose messages or runs are awaited.
    pub source_key: String,
    pub expires_at: Millis,
}

/// An event recorded for an open wait, not yet evaluated against its conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitCandidate {
    pub id: String,
    pub payload: Value,
    pub inserted_at: Millis,
}

/// A run arriving at a batch step.
#[derive(Debug, Clone)]
pub struct BatchJoin {
    pub run_id: String,
    pub environment_id: String,
    /// Everything that separates batches: workflow, step or version, recipient, tenant
    /// and the rendered batch key.
    pub batch_key: String,
    pub workflow_key: String,
    pub step_ref: String,
    /// Render limit, order and version mode, kept for the close.
    pub settings: Value,
    /// When a batch opened now would close.
    pub closes_at: Millis,
    /// Sliding windows: where this arrival pushes the close, before the extension limit.
    pub slide_to: Option<Millis>,
    pub extension_limit: Option<hark_core::schedule::Duration>,
    pub items_max: Option<i64>,
    pub flush_leading: bool,
    /// With `flush_leading`: the batch variables the flushed run continues with (itself as
    /// the only activity).
    pub flush_state: serde_json::Value,
    pub actor: Option<String>,
    pub data: Value,
    /// The node after the batch step.
    pub next_cursor: i64,
    pub events: Vec<RunEvent>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchJoined {
    /// The run opened the batch; with `flush_leading` it continues at once and is not an
    /// activity of the batch.
    Opened {
        batch_id: String,
        flushed: bool,
    },
    Joined {
        batch_id: String,
    },
}

/// One activity of a batch, as the close hands it to the continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchActivity {
    pub run_id: String,
    pub actor: Option<String>,
    pub data: Value,
    pub inserted_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchClosed {
    /// The batch was closed before (a repeated job).
    AlreadyClosed,
    /// The window moved; the job sleeps until then.
    Rescheduled(Millis),
    /// Every activity was cancelled.
    Empty,
    Closed {
        continuation_run_id: String,
        total_activities: i64,
    },
}

/// A run passing a throttle step.
#[derive(Debug, Clone)]
pub struct ThrottleHit {
    pub run_id: String,
    pub environment_id: String,
    pub throttle_key: String,
    pub limit: i64,
    /// The end of a window opened by this hit.
    pub window_end: Millis,
    pub next_cursor: i64,
    pub events_if_passed: Vec<RunEvent>,
    pub events_if_throttled: Vec<RunEvent>,
    pub now: Millis,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct DeliveryCommit {
    pub message_id: String,
    pub status: String,
    /// One log per provider request of the attempt (a push to three tokens is three).
    pub logs: Vec<DeliveryLog>,
    pub event_type: String,
    pub event_data: Value,
    /// When set, the job is retried at this instant; otherwise it is done.
    pub retry_at: Option<Millis>,
    /// The id the provider gave the message when it accepted it, for status callbacks.
    pub provider_message_id: Option<String>,
    pub now: Millis,
}

/// A status a provider reported for a message after accepting it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatusUpdate {
    pub message_id: String,
    /// `delivered`, `bounced` or `undelivered`.
    pub status: String,
    /// `message.delivered`, `message.bounced` or `message.undelivered`.
    pub event_type: String,
    pub event_data: Value,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BulkOperation {
    pub id: String,
    pub name: String,
    pub status: String,
    pub estimated_total_rows: i64,
    pub processed_rows: i64,
    pub success_count: i64,
    pub error_count: i64,
    pub error_items: Value,
    pub inserted_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
}

/// An object (Knock's `Object`); tenants are objects in [`TENANTS_COLLECTION`].
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    pub collection: String,
    pub id: String,
    /// Every property except `id` and `collection`, custom ones included.
    pub properties: Map<String, Value>,
    pub inserted_at: Millis,
    pub updated_at: Millis,
}

/// The collection tenants live in, as in Knock.
pub const TENANTS_COLLECTION: &str = "$tenants";

/// Who a recipient document belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    User(String),
    Object {
        collection: String,
        id: String,
    },
    /// The environment itself: holds the environment-level default preference set.
    Environment,
}

impl Owner {
    /// The owner of a recipient's documents: a user, or the object in `collection`.
    pub fn recipient(collection: Option<&str>, id: &str) -> Self {
        match collection {
            Some(collection) => Owner::Object {
                collection: collection.to_string(),
                id: id.to_string(),
            },
            None => Owner::User(id.to_string()),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Owner::Environment => "environment".to_string(),
            Owner::User(id) => format!("user:{id}"),
            Owner::Object { collection, id } => format!("object:{collection}:{id}"),
        }
    }
}

/// The kinds of per-recipient documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A preference set, keyed by its id (`default` or a tenant id).
    Preferences,
    /// Channel data, keyed by channel id.
    ChannelData,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Preferences => "preferences",
            DocumentKind::ChannelData => "channel_data",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: String,
    pub data: Value,
    pub updated_at: Millis,
}

/// A recipient that can subscribe: a user, or an object (for nested hierarchies).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecipientKey {
    /// `None` for a user.
    pub collection: Option<String>,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub collection: String,
    pub object_id: String,
    pub recipient: RecipientKey,
    pub properties: Value,
    pub inserted_at: Millis,
    pub updated_at: Millis,
}

/// A fan-out in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOut {
    pub id: String,
    pub environment_id: String,
    pub collection: String,
    pub object_id: String,
    /// 1 for an object in the trigger, 2 for an object subscribed to it.
    pub depth: i64,
    /// The last subscriber handled.
    pub after: Option<RecipientKey>,
    /// The trigger's actor, who is never notified of their own action.
    pub actor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudienceMember {
    pub user_id: String,
    pub tenant: Option<String>,
    pub added_at: Millis,
}

/// An audience as the Management API defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceDefinition {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    /// `static` or `dynamic`; fixed once created.
    pub audience_type: String,
    /// Knock's `segments` for a dynamic audience (`[]` for static ones), as given.
    pub segments: Value,
    pub archived_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The job queue as a scrape sees it: jobs due now (not leased) and the oldest due time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobQueueStats {
    pub due: i64,
    pub oldest_due_at: Option<Millis>,
}

/// An email layout: the frame an email step's rendered body is placed into.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailLayout {
    pub key: String,
    pub name: String,
    /// Liquid; `{{ content }}` is the rendered HTML body.
    pub html_layout: String,
    /// Liquid; `{{ content }}` is the rendered text body.
    pub text_layout: String,
    /// Knock's `footer_links`: `[{text, url}]`, as given.
    pub footer_links: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}
