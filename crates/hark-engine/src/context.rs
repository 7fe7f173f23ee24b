//! What a run's steps see: the recipient, the actor, the run's current data and state,
//! as template variables and as the root that condition paths resolve against.

use std::sync::Arc;

use hark_core::audience::Segments;
use hark_core::conditions::{AnyItem, Condition, ConditionGroup, Evaluation, JsonScope, Operator};
use hark_core::preferences::{
    evaluate as evaluate_preferences, Decision, MessageTarget, PreferenceSet, PreferenceSources,
};
use hark_core::time::rfc3339;
use hark_core::workflow::WorkflowDefinition;
use hark_core::Millis;
use hark_store::{
    Document, DocumentKind, MessageFilter, Owner, PageRequest, RecipientRun, StoreError,
    TENANTS_COLLECTION,
};
use hark_template::{RenderContext, Renderer};
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;

use crate::prefetch::Prefetched;
use crate::render::StepRenderError;
use crate::Engine;

/// The key of a recipient's or an environment's default preference set.
pub(crate) const DEFAULT_PREFERENCE_SET: &str = "default";

/// A user as templates and recipient snapshots see it: properties flattened with `id`.
pub(crate) fn user_value(id: &str, properties: Option<&Map<String, Value>>) -> Value {
    let mut map = properties.cloned().unwrap_or_default();
    // Liquid loops see plain values, where a missing key is an error rather than nil;
    // Knock's standard user fields always exist so `activity.actor.name` renders.
    for key in ["name", "email", "phone_number", "avatar", "timezone"] {
        map.entry(key).or_insert(Value::Null);
    }
    map.insert("id".into(), Value::String(id.to_string()));
    map.insert("__typename".into(), Value::String("User".into()));
    Value::Object(map)
}

/// Stored sets that no longer parse are ignored rather than blocking sends.
fn parse_preference_sets(docs: &[Document]) -> Vec<(String, PreferenceSet)> {
    docs.iter()
        .filter_map(|d| parse_preference_set(d).map(|set| (d.key.clone(), set)))
        .collect()
}

fn parse_preference_set(doc: &Document) -> Option<PreferenceSet> {
    PreferenceSet::parse(&doc.data, "preferences")
        .ok()
        .map(|(set, _)| set)
}

pub(crate) struct RunContext {
    pub run: RecipientRun,
    pub workflow: Arc<WorkflowDefinition>,
    pub recipient: Value,
    pub actor: Value,
    /// The run's data as earlier steps left it.
    pub data: Value,
    pub state: Value,
    /// Batch variables with actors expanded to users, once the run continues a batch.
    batch: Option<Map<String, Value>>,
    /// The run's tenant with its properties (`Null` without a tenant).
    tenant: Value,
    /// The recipient's preference sets by id (`default`, tenant ids).
    /// Loaded at the first channel step: runs that send nothing never read them.
    preference_sets: OnceCell<Vec<(String, PreferenceSet)>>,
    /// The environment-level default preference set, if one is stored.
    environment_preferences: OnceCell<Option<PreferenceSet>>,
    /// The static audiences the recipient is in (for this run's tenant), loaded only
    /// when a condition asks.
    audiences: OnceCell<Vec<String>>,
}

impl RunContext {
    /// Builds the context, from `prefetched` where the batch read ahead.
    pub async fn load(
        engine: &Engine,
        run: RecipientRun,
        workflow: Arc<WorkflowDefinition>,
        prefetched: Option<&Prefetched>,
    ) -> Result<Self, StoreError> {
        let environment_id = run.environment_id.clone();
        let user = |id: &str| prefetched.and_then(|p| p.user(&environment_id, id));
        let store = &engine.inner.store;
        let mut recipient = match &run.recipient_collection {
            // An object recipient: its properties with `id` and `collection`, as Knock
            // renders `recipient` for objects.
            Some(collection) => {
                let object = store
                    .get_object(&run.environment_id, collection, &run.recipient_id)
                    .await?;
                let mut map = object.map(|o| o.properties).unwrap_or_default();
                map.insert("id".into(), Value::String(run.recipient_id.clone()));
                map.insert("collection".into(), Value::String(collection.clone()));
                map.insert("__typename".into(), Value::String("Object".into()));
                Value::Object(map)
            }
            None => match user(&run.recipient_id) {
                Some(properties) => user_value(&run.recipient_id, properties),
                None => {
                    let recipient_user = store
                        .get_user(&run.environment_id, &run.recipient_id)
                        .await?;
                    user_value(
                        &run.recipient_id,
                        recipient_user.as_ref().map(|u| &u.properties),
                    )
                }
            },
        };
        // A run reached through a subscription sees it as `recipient.subscription`.
        if let (Value::Object(map), Some(subscription)) =
            (&mut recipient, run.state.get("subscription"))
        {
            map.insert("subscription".into(), subscription.clone());
        }
        let actor = match &run.actor {
            Some(actor_id) => match user(actor_id) {
                Some(properties) => user_value(actor_id, properties),
                None => {
                    let user = store.get_user(&run.environment_id, actor_id).await?;
                    user_value(actor_id, user.as_ref().map(|u| &u.properties))
                }
            },
            None => Value::Null,
        };
        let tenant = match &run.tenant {
            Some(id) => {
                let found = store
                    .get_object(&run.environment_id, TENANTS_COLLECTION, id)
                    .await?;
                let mut map = found.map(|t| t.properties).unwrap_or_default();
                map.insert("id".into(), Value::String(id.clone()));
                Value::Object(map)
            }
            None => Value::Null,
        };
        let owner = Owner::recipient(run.recipient_collection.as_deref(), &run.recipient_id);
        let preference_sets =
            match prefetched.and_then(|p| p.preference_documents(&environment_id, &owner)) {
                Some(docs) => OnceCell::new_with(Some(parse_preference_sets(docs))),
                None => OnceCell::new(),
            };
        let environment_preferences =
            match prefetched.and_then(|p| p.environment_preferences(&environment_id)) {
                Some(doc) => OnceCell::new_with(Some(doc.and_then(parse_preference_set))),
                None => OnceCell::new(),
            };
        let mut ctx = Self {
            audiences: OnceCell::new(),
            preference_sets,
            environment_preferences,
            tenant,
            data: run.data.clone(),
            state: run.state.clone(),
            run,
            workflow,
            recipient,
            actor,
            batch: None,
        };
        ctx.expand_batch(engine).await?;
        Ok(ctx)
    }

    /// Continues with these batch variables (a flushed leading item).
    pub async fn set_batch(&mut self, engine: &Engine, batch: Value) -> Result<(), StoreError> {
        if let Value::Object(map) = &mut self.state {
            map.insert("batch".into(), batch);
        }
        self.expand_batch(engine).await
    }

    /// Turns the batch state's actor ids into user objects, once per run load.
    async fn expand_batch(&mut self, engine: &Engine) -> Result<(), StoreError> {
        let Some(batch) = self.state.get("batch").and_then(Value::as_object).cloned() else {
            return Ok(());
        };
        let mut ids: Vec<String> = batch
            .get("actors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(activities) = batch.get("activities").and_then(Value::as_array) {
            for a in activities {
                if let Some(id) = a.get("actor").and_then(Value::as_str) {
                    if !ids.iter().any(|i| i == id) {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        let users = engine
            .inner
            .store
            .get_users(&self.run.environment_id, &ids)
            .await?;
        let user = |id: &str| {
            let found = users.iter().find(|u| u.id == id);
            user_value(id, found.map(|u| &u.properties))
        };
        let mut vars = Map::new();
        let actors: Vec<Value> = batch
            .get("actors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(user).collect())
            .unwrap_or_default();
        let activities: Vec<Value> = batch
            .get("activities")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|a| {
                        // Each activity exposes its trigger data at the top level too, so
                        // templates can say `activity.page_name` as in Knock's examples.
                        let mut out = a
                            .get("data")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default();
                        out.insert("id".into(), a.get("id").cloned().unwrap_or(Value::Null));
                        out.insert("data".into(), a.get("data").cloned().unwrap_or(json!({})));
                        out.insert(
                            "actor".into(),
                            a.get("actor")
                                .and_then(Value::as_str)
                                .map(user)
                                .unwrap_or(Value::Null),
                        );
                        out.insert("recipient".into(), self.recipient.clone());
                        out.insert(
                            "inserted_at".into(),
                            a.get("inserted_at").cloned().unwrap_or(Value::Null),
                        );
                        Value::Object(out)
                    })
                    .collect()
            })
            .unwrap_or_default();
        vars.insert("activities".into(), Value::Array(activities));
        vars.insert("actors".into(), Value::Array(actors));
        for key in ["total_activities", "total_actors"] {
            vars.insert(key.into(), batch.get(key).cloned().unwrap_or(json!(0)));
        }
        self.batch = Some(vars);
        Ok(())
    }

    /// The message's actors: the batch's actors after a batch, else the trigger's actor.
    pub fn actors(&self) -> Vec<String> {
        match self
            .state
            .pointer("/batch/actors")
            .and_then(Value::as_array)
        {
            Some(ids) => ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            None => self.run.actor.iter().cloned().collect(),
        }
    }

    /// The recipient's preference sets by id (`default`, tenant ids), read once per run
    /// load. Stored sets that no longer parse are ignored rather than blocking sends.
    async fn preference_sets(
        &self,
        engine: &Engine,
    ) -> Result<&[(String, PreferenceSet)], StoreError> {
        let sets = self
            .preference_sets
            .get_or_try_init(|| async {
                let docs = engine
                    .inner
                    .store
                    .list_documents(
                        &self.run.environment_id,
                        &Owner::recipient(
                            self.run.recipient_collection.as_deref(),
                            &self.run.recipient_id,
                        ),
                        DocumentKind::Preferences,
                    )
                    .await?;
                Ok::<_, StoreError>(parse_preference_sets(&docs))
            })
            .await?;
        Ok(sets)
    }

    /// The environment's default preference set, read once per run load.
    async fn environment_preferences(
        &self,
        engine: &Engine,
    ) -> Result<Option<&PreferenceSet>, StoreError> {
        let set = self
            .environment_preferences
            .get_or_try_init(|| async {
                let doc = engine
                    .inner
                    .store
                    .get_document(
                        &self.run.environment_id,
                        &Owner::Environment,
                        DocumentKind::Preferences,
                        DEFAULT_PREFERENCE_SET,
                    )
                    .await?;
                Ok::<_, StoreError>(doc.as_ref().and_then(parse_preference_set))
            })
            .await?;
        Ok(set.as_ref())
    }

    /// The audiences the recipient is in, read once per run load: static memberships,
    /// plus every dynamic audience whose segments the recipient's current properties
    /// match (dynamic audiences have no stored members to look up).
    pub async fn audiences(&self, engine: &Engine) -> Result<&[String], StoreError> {
        let audiences = self
            .audiences
            .get_or_try_init(|| async {
                // Audience members are users: an object (even one sharing a user's id) is
                // in no audience, static or dynamic.
                if self.run.recipient_collection.is_some() {
                    return Ok::<_, StoreError>(Vec::new());
                }
                let store = &engine.inner.store;
                let mut keys = store
                    .audiences_of(
                        &self.run.environment_id,
                        &self.run.recipient_id,
                        self.run.tenant.as_deref(),
                    )
                    .await?;
                let now = engine.inner.clock.now_ms();
                for audience in store.dynamic_audiences(&self.run.environment_id).await? {
                    // Stored segments were validated when written; one that no longer
                    // parses matches nobody rather than failing the run.
                    let matched = Segments::parse(&audience.segments, "segments")
                        .is_ok_and(|segments| segments.includes(&self.recipient, now));
                    if matched && !keys.contains(&audience.key) {
                        keys.push(audience.key);
                    }
                }
                Ok::<_, StoreError>(keys)
            })
            .await?;
        Ok(audiences)
    }

    /// The audiences `group` may ask about: none are read for groups without audience
    /// operators.
    pub async fn audiences_for(
        &self,
        engine: &Engine,
        group: &ConditionGroup,
    ) -> Result<&[String], StoreError> {
        if mentions(group, &|c| {
            matches!(
                c.operator,
                Operator::IsAudienceMember | Operator::IsNotAudienceMember
            )
        }) {
            self.audiences(engine).await
        } else {
            Ok(&[])
        }
    }

    /// Whether the recipient's preferences let this channel step send, and which
    /// preference decided.
    pub async fn preference_decision(
        &self,
        engine: &Engine,
        channel_type: &str,
        channel_id: &str,
        now: Millis,
    ) -> Result<Decision, StoreError> {
        let sets = self.preference_sets(engine).await?;
        let environment_default = self.environment_preferences(engine).await?;
        let tenant_default = self.tenant.pointer("/settings/preference_set");
        let set = |id: &str| sets.iter().find(|(key, _)| key == id).map(|(_, set)| set);
        let sources = PreferenceSources {
            environment_default,
            tenant_default,
            recipient_tenant: self.run.tenant.as_deref().and_then(set),
            recipient_default: set(DEFAULT_PREFERENCE_SET),
        };
        let effective = sources.resolve();
        let target = MessageTarget {
            workflow_key: &self.run.workflow_key,
            categories: &self.workflow.categories,
            channel_type,
            channel_id,
            commercial: self.workflow.is_commercial,
            override_preferences: self.workflow.override_preferences,
        };
        // Preference conditions may ask about audiences; without any preferences there is
        // nothing to ask.
        let audiences =
            if sets.is_empty() && tenant_default.is_none() && environment_default.is_none() {
                &[][..]
            } else {
                self.audiences(engine).await?
            };
        let root = self.variables(now);
        let scope = JsonScope {
            root: &root,
            audiences,
        };
        Ok(evaluate_preferences(&effective, &target, &scope, now))
    }

    /// What a message sent after a batch records of it: the rendered activities and the
    /// totals, for feed items and the activities endpoint.
    pub fn message_batch(&self) -> Option<Value> {
        let batch = self.state.get("batch")?;
        Some(json!({
            "activities": batch.get("activities").cloned().unwrap_or(json!([])),
            "total_activities": batch.get("total_activities").cloned().unwrap_or(json!(1)),
            "total_actors": batch.get("total_actors").cloned().unwrap_or(json!(0)),
        }))
    }

    /// Template `vars`: the tenant's branding under `vars.branding`, as Knock exposes it.
    fn vars(&self) -> Value {
        match self.tenant.pointer("/settings/branding") {
            Some(branding) => json!({ "branding": branding }),
            None => json!({}),
        }
    }

    fn workflow_value(&self) -> Value {
        json!({
            "key": self.run.workflow_key,
            "id": self.run.workflow_key,
            "categories": self.workflow.categories,
            "run_id": self.run.workflow_run_id,
            "cancellation_key": self.run.cancellation_key,
        })
    }

    /// What a template can see, per Knock: `recipient`, `actor`, `data`, `vars`, `tenant`,
    /// `workflow`, `timestamp`, and the batch variables after a batch.
    pub fn variables(&self, now: Millis) -> Value {
        let mut vars = json!({
            "recipient": self.recipient,
            "actor": self.actor,
            "data": self.data,
            "vars": self.vars(),
            "tenant": self.tenant,
            "workflow": self.workflow_value(),
            "refs": self.state.get("refs").cloned().unwrap_or(json!({})),
            "timestamp": rfc3339(now),
        });
        if let (Value::Object(map), Some(batch)) = (&mut vars, &self.batch) {
            for (k, v) in batch {
                map.insert(k.clone(), v.clone());
            }
        }
        vars
    }

    /// The root condition paths resolve against. `refs` holds each earlier channel step's
    /// message status plus the outputs of wait steps.
    pub async fn condition_root(
        &self,
        engine: &Engine,
        group: &ConditionGroup,
        now: Millis,
    ) -> Result<Value, StoreError> {
        let mut root = self.variables(now);
        if let Value::Object(map) = &mut root {
            map.insert(
                "run".into(),
                json!({
                    "id": self.run.id,
                    "workflow_run_id": self.run.workflow_run_id,
                    "inserted_at": rfc3339(self.run.inserted_at),
                }),
            );
            if mentions_refs(group) {
                map.insert("refs".into(), self.refs(engine).await?);
            }
        }
        Ok(root)
    }

    async fn refs(&self, engine: &Engine) -> Result<Value, StoreError> {
        let mut refs = self
            .state
            .get("refs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let filter = MessageFilter {
            recipient_run_id: Some(self.run.id.clone()),
            ..MessageFilter::default()
        };
        let page = PageRequest {
            page_size: 50,
            ..PageRequest::default()
        };
        let messages = engine
            .inner
            .store
            .list_messages(&self.run.environment_id, &filter, &page)
            .await?;
        for m in messages.entries {
            // Every engagement the message reached; status conditions rank them.
            let engagement: Vec<&str> = [
                ("seen", m.seen_at),
                ("read", m.read_at),
                ("interacted", m.interacted_at),
                ("link_clicked", m.link_clicked_at),
                ("archived", m.archived_at),
            ]
            .into_iter()
            .filter_map(|(name, at)| at.map(|_| name))
            .collect();
            let entry = refs.entry(m.step_ref.clone()).or_insert_with(|| json!({}));
            if let Value::Object(e) = entry {
                e.insert("delivery_status".into(), json!(m.status));
                e.insert("engagement_status".into(), json!(engagement));
                e.insert("message_id".into(), json!(m.id));
                e.insert("seen".into(), json!(m.seen_at.is_some()));
                e.insert("read".into(), json!(m.read_at.is_some()));
                e.insert("archived".into(), json!(m.archived_at.is_some()));
                e.insert("interacted".into(), json!(m.interacted_at.is_some()));
                e.insert("link_clicked".into(), json!(m.link_clicked_at.is_some()));
            }
        }
        Ok(Value::Object(refs))
    }

    /// Evaluates `group` against this run; the evaluation carries every condition's
    /// resolved values for the run log.
    pub async fn evaluate(
        &self,
        engine: &Engine,
        group: &ConditionGroup,
        now: Millis,
    ) -> Result<Evaluation, StoreError> {
        let root = self.condition_root(engine, group, now).await?;
        let scope = JsonScope {
            root: &root,
            audiences: self.audiences_for(engine, group).await?,
        };
        Ok(group.evaluate(&scope, now))
    }

    /// Renders small Liquid templates (keys, settings) with this run's variables, off the
    /// async workers because templates are user code.
    pub async fn render_strings(
        &self,
        renderer: &Renderer,
        sources: Vec<(String, String)>,
        now: Millis,
    ) -> Result<Vec<String>, StepRenderError> {
        let variables = self.variables(now);
        let renderer = renderer.clone();
        tokio::task::spawn_blocking(move || {
            let ctx = RenderContext::from_json(&variables).map_err(|source| {
                StepRenderError::Template {
                    field: "context".into(),
                    source,
                }
            })?;
            sources
                .iter()
                .map(|(field, source)| {
                    renderer
                        .render(source, &ctx)
                        .map_err(|source| StepRenderError::Template {
                            field: field.clone(),
                            source,
                        })
                })
                .collect()
        })
        .await
        .map_err(|e| StepRenderError::Invalid(format!("renderer crashed: {e}")))?
    }
}

/// Whether any condition of `group` satisfies `test`.
fn mentions(group: &ConditionGroup, test: &dyn Fn(&Condition) -> bool) -> bool {
    match group {
        ConditionGroup::All(items) => items.iter().any(test),
        ConditionGroup::Any(items) => items.iter().any(|item| match item {
            AnyItem::Condition(c) => test(c),
            AnyItem::All(items) => items.iter().any(test),
        }),
    }
}

fn mentions_refs(group: &ConditionGroup) -> bool {
    mentions(group, &|c| {
        c.variable.starts_with("refs.")
            || c.argument
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("refs."))
    })
}
