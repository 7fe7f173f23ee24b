//! What a claimed batch of jobs reads before it runs: the runs themselves, their
//! recipients and actors, the recipients' preference sets and each environment's default
//! set, and the messages that delivery jobs send — one query per kind for the whole batch
//! instead of one per job. Reads are taken right after the claim, where each job would
//! otherwise have read them itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hark_store::{
    ClaimedJob, Document, DocumentKind, JobKind, MessageRecord, Owner, RecipientRun, Store,
    StoreError,
};
use serde_json::{Map, Value};

use crate::context::DEFAULT_PREFERENCE_SET;

/// Environment and id (of a user, or an owner key for documents).
type Scoped = (String, String);

#[derive(Default)]
pub(crate) struct Prefetched {
    /// Shared with the jobs that carried them, so a handed-over row is copied only
    /// when its job takes it.
    runs: HashMap<String, Arc<RecipientRun>>,
    /// Users by environment and id; `None` for an id asked for that does not exist.
    users: HashMap<Scoped, Option<Map<String, Value>>>,
    /// Recipients' preference documents by environment and owner key.
    preferences: HashMap<Scoped, Vec<Document>>,
    /// Each environment's default preference document (`None`: none stored).
    environment_preferences: HashMap<String, Option<Document>>,
    /// Messages of the batch's delivery jobs, by id.
    messages: HashMap<String, Arc<MessageRecord>>,
}

/// Whether reading ahead pays: any job that would otherwise read for itself. Even for
/// one job it does: its reads go out together instead of one after another.
pub(crate) fn worth_prefetching(jobs: &[ClaimedJob]) -> bool {
    jobs.iter()
        .any(|j| matches!(j.kind, JobKind::AdvanceRun | JobKind::DeliverMessage))
}

impl Prefetched {
    /// Reads ahead for the batch's `advance_run` and `deliver_message` jobs. Reads that
    /// do not need each other's results go out together: the messages with the runs,
    /// then each environment's users and preference sets (its recipients' and its own, in
    /// one query).
    pub async fn load(store: &Arc<dyn Store>, jobs: &[ClaimedJob]) -> Result<Self, StoreError> {
        // A run or message handed over with its job, as its writer wrote it, is not read
        // again.
        let written_runs = jobs.iter().filter_map(ClaimedJob::written_run).cloned();
        let written_messages = jobs.iter().filter_map(ClaimedJob::written_message).cloned();
        let ids_to_read = |kind: JobKind| -> Vec<String> {
            jobs.iter()
                .filter(|j| j.kind == kind && j.written.is_none())
                .map(|j| j.ref_id.clone())
                .collect()
        };
        let (message_ids, run_ids) = (
            ids_to_read(JobKind::DeliverMessage),
            ids_to_read(JobKind::AdvanceRun),
        );
        let (read_messages, read_runs) = tokio::try_join!(
            async {
                if message_ids.is_empty() {
                    return Ok(Vec::new());
                }
                store.load_messages_for_jobs(&message_ids).await
            },
            async {
                if run_ids.is_empty() {
                    return Ok(Vec::new());
                }
                store.load_runs_for_jobs(&run_ids).await
            },
        )?;
        // Rows handed over come last, so they win over a read of the same row.
        let runs: Vec<Arc<RecipientRun>> = read_runs
            .into_iter()
            .map(Arc::new)
            .chain(written_runs)
            .collect();
        let messages: Vec<Arc<MessageRecord>> = read_messages
            .into_iter()
            .map(Arc::new)
            .chain(written_messages)
            .collect();
        let mut prefetched = Prefetched {
            messages: messages.into_iter().map(|m| (m.id.clone(), m)).collect(),
            ..Prefetched::default()
        };
        let mut by_environment: BTreeMap<&str, Vec<&RecipientRun>> = BTreeMap::new();
        for run in runs.iter().map(Arc::as_ref) {
            by_environment
                .entry(run.environment_id.as_str())
                .or_default()
                .push(run);
        }
        for (environment_id, runs) in by_environment {
            let user_ids: BTreeSet<String> = runs
                .iter()
                .filter(|r| r.recipient_collection.is_none())
                .map(|r| r.recipient_id.clone())
                .chain(runs.iter().filter_map(|r| r.actor.clone()))
                .collect();
            let user_ids: Vec<String> = user_ids.into_iter().collect();
            let owners: BTreeSet<Owner> = runs
                .iter()
                .map(|r| Owner::recipient(r.recipient_collection.as_deref(), &r.recipient_id))
                .collect();
            let owners: Vec<Owner> = owners.into_iter().collect();
            // The environment's sets come with the recipients' in one query.
            let mut owners_and_environment = owners.clone();
            owners_and_environment.push(Owner::Environment);
            let (users, documents) = tokio::try_join!(
                store.get_users(environment_id, &user_ids),
                store.list_documents_of(
                    environment_id,
                    &owners_and_environment,
                    DocumentKind::Preferences
                ),
            )?;
            let environment_key = Owner::Environment.key();
            let mut default_set = None;
            let found: HashMap<String, Map<String, Value>> =
                users.into_iter().map(|u| (u.id, u.properties)).collect();
            for id in user_ids {
                let properties = found.get(&id).cloned();
                prefetched
                    .users
                    .insert((environment_id.to_string(), id), properties);
            }
            for owner in &owners {
                prefetched
                    .preferences
                    .insert((environment_id.to_string(), owner.key()), Vec::new());
            }
            for (owner_key, document) in documents {
                if owner_key == environment_key {
                    if document.key == DEFAULT_PREFERENCE_SET {
                        default_set = Some(document);
                    }
                    continue;
                }
                prefetched
                    .preferences
                    .entry((environment_id.to_string(), owner_key))
                    .or_default()
                    .push(document);
            }
            prefetched
                .environment_preferences
                .insert(environment_id.to_string(), default_set);
        }
        prefetched.runs = runs.into_iter().map(|r| (r.id.clone(), r)).collect();
        Ok(prefetched)
    }

    pub fn run(&self, run_id: &str) -> Option<RecipientRun> {
        self.runs.get(run_id).map(|run| RecipientRun::clone(run))
    }

    pub fn message(&self, message_id: &str) -> Option<MessageRecord> {
        self.messages
            .get(message_id)
            .map(|message| MessageRecord::clone(message))
    }

    /// `Some(properties)` when the user was read ahead (`Some(None)`: no such user).
    pub fn user(&self, environment_id: &str, id: &str) -> Option<Option<&Map<String, Value>>> {
        self.users
            .get(&(environment_id.to_string(), id.to_string()))
            .map(Option::as_ref)
    }

    pub fn preference_documents(&self, environment_id: &str, owner: &Owner) -> Option<&[Document]> {
        self.preferences
            .get(&(environment_id.to_string(), owner.key()))
            .map(Vec::as_slice)
    }

    /// `Some(default set)` when the environment was read ahead.
    pub fn environment_preferences(&self, environment_id: &str) -> Option<Option<&Document>> {
        self.environment_preferences
            .get(environment_id)
            .map(Option::as_ref)
    }
}
