//! A Hark server on loopback for integration tests: real store (SQLite file or fresh
//! PostgreSQL database), real axum server, the engine driven in virtual time.

#![allow(dead_code)]

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use hark_channels::outbound::OutboundPolicy;
use hark_core::ManualClock;
use hark_engine::{ChannelConfig, ChannelRegistry, Engine, EngineConfig};
use hark_store::{hash_secret, KeyKind, Store};
use serde_json::{json, Value};

pub const START_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    /// The database URL, for opening a second store handle on the same data.
    pub database_url: String,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub secret_key: String,
    pub public_key: String,
    pub service_token: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend, channels: Vec<ChannelConfig>) -> TestServer {
        Self::start_with_policy(backend, channels, true).await
    }

    pub async fn start_with_policy(
        backend: Backend,
        channels: Vec<ChannelConfig>,
        allow_private_networks: bool,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("hark.db").display()),
            Backend::Postgres => hark_store::testing::fresh_postgres_database()
                .await
                .expect("fresh postgres database"),
        };
        let store = hark_store::connect(&url).await.expect("store");
        let database_url = url.clone();
        store
            .ensure_default_environments(START_MS)
            .await
            .expect("environments");
        let clock = Arc::new(ManualClock::new(START_MS));
        let mut registry = ChannelRegistry::build(
            &channels,
            OutboundPolicy {
                allow_private_networks,
            },
            Duration::from_secs(2),
        )
        .expect("channels");
        for slug in ["development", "production"] {
            let environment = store
                .environment_by_slug(slug)
                .await
                .expect("q")
                .expect("environment");
            registry.bind_environment(&environment.id, slug);
        }
        // Bound before the engine exists: tracking URLs point at this address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tracking_secret = store
            .server_secret(
                hark_engine::tracking::TRACKING_SECRET_NAME,
                &hark_core::ids::random_hex(32),
                START_MS,
            )
            .await
            .expect("tracking secret");
        let tracking = hark_engine::tracking::Tracking::new(
            &format!("http://{addr}"),
            hark_engine::tracking::TrackingKey::new(tracking_secret.as_bytes()),
        );
        let engine = Engine::new(
            store.clone(),
            clock.clone(),
            Arc::new(registry),
            EngineConfig {
                tracking: Some(tracking),
                ..EngineConfig::default()
            },
        )
        .expect("engine");
        let state = hark_api::AppState {
            store: store.clone(),
            clock: clock.clone(),
            engine: engine.clone(),
            triggers: hark_store::trigger_committer(store.clone(), engine.local_workers()),
            lookups: Default::default(),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, hark_api::router(state)).await;
        });
        let dev = store
            .environment_by_slug("development")
            .await
            .expect("q")
            .expect("development");
        let secret_key = format!("sk_test_{}", uuid_like());
        let public_key = format!("pk_test_{}", uuid_like());
        let service_token = format!("st_{}", uuid_like());
        store
            .create_api_key(
                &dev.id,
                KeyKind::Secret,
                &hash_secret(&secret_key),
                START_MS,
            )
            .await
            .expect("sk");
        store
            .create_api_key(
                &dev.id,
                KeyKind::Public,
                &hash_secret(&public_key),
                START_MS,
            )
            .await
            .expect("pk");
        store
            .create_service_token(&hash_secret(&service_token), START_MS)
            .await
            .expect("token");
        TestServer {
            base: format!("http://{addr}"),
            database_url,
            store,
            engine,
            clock,
            secret_key,
            public_key,
            service_token,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn env_id(&self, slug: &str) -> String {
        self.store
            .environment_by_slug(slug)
            .await
            .expect("q")
            .expect("environment")
            .id
    }

    /// Sends a request with the secret key; returns status and JSON body (Null if empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &self.secret_key.clone(), &[])
            .await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn mgmt(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(
            method,
            &format!("/mgmt{path}"),
            body,
            &self.service_token.clone(),
            &[],
        )
        .await
    }

    /// Creates and commits a workflow through the Management API.
    pub async fn put_workflow(&self, key: &str, steps: Value) {
        let (status, body) = self
            .mgmt(
                "PUT",
                &format!("/v1/workflows/{key}?environment=development&commit=true"),
                Some(json!({"workflow": {"name": key, "steps": steps, "categories": ["updates"]}})),
            )
            .await;
        assert_eq!(status, 200, "put workflow: {body}");
    }

    /// Creates and commits a whole `WorkflowRequest` (steps, conditions, settings, …).
    pub async fn put_workflow_request(&self, key: &str, workflow: Value) {
        let (status, body) = self
            .mgmt(
                "PUT",
                &format!("/v1/workflows/{key}?environment=development&commit=true"),
                Some(json!({ "workflow": workflow })),
            )
            .await;
        assert_eq!(status, 200, "put workflow: {body}");
    }

    /// Moves virtual time forward and runs every job then due.
    pub async fn advance(&self, ms: i64) -> usize {
        self.clock.advance(ms);
        self.run_engine().await
    }

    /// The recipient's runs of a workflow, newest first (every page).
    pub async fn runs_of(&self, recipient: &str, workflow: &str) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut after = String::new();
        loop {
            let (status, body) = self
                .call(
                    "GET",
                    &format!("/v1/workflow_recipient_runs?recipient={recipient}&workflow={workflow}&page_size=50{after}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "runs: {body}");
            runs.extend(body["items"].as_array().cloned().unwrap_or_default());
            match body["page_info"]["after"].as_str() {
                Some(cursor) => after = format!("&after={cursor}"),
                None => return runs,
            }
        }
    }

    /// A message's delivery logs, newest first.
    pub async fn delivery_logs(&self, message_id: &str) -> Vec<Value> {
        let (status, logs) = self
            .call(
                "GET",
                &format!("/v1/messages/{message_id}/delivery_logs"),
                None,
            )
            .await;
        assert_eq!(status, 200, "delivery logs: {logs}");
        logs["items"].as_array().cloned().unwrap_or_default()
    }

    /// The event log of the recipient's latest run (of any workflow).
    pub async fn recipient_events(&self, recipient: &str) -> Vec<Value> {
        let (_, runs) = self
            .call(
                "GET",
                &format!("/v1/workflow_recipient_runs?recipient={recipient}"),
                None,
            )
            .await;
        let run_id = runs["items"][0]["id"].as_str().expect("run").to_string();
        self.run_log(&run_id).await["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A run with its event log.
    pub async fn run_log(&self, run_id: &str) -> Value {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/workflow_recipient_runs/{run_id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "run: {body}");
        body
    }

    /// The event names of a run's log, in order.
    pub async fn run_events(&self, run_id: &str) -> Vec<String> {
        self.run_log(run_id).await["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e["event"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The markdown of each feed item of `user`, newest first.
    pub async fn feed_texts(&self, user: &str) -> Vec<String> {
        self.feed(user, "?page_size=50").await["entries"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["blocks"][0]["content"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn trigger(&self, key: &str, body: Value) -> (u16, Value) {
        self.call("POST", &format!("/v1/workflows/{key}/trigger"), Some(body))
            .await
    }

    /// Runs every job due now, including the jobs those jobs create.
    pub async fn run_engine(&self) -> usize {
        self.engine.run_until_idle().await.expect("engine")
    }

    pub async fn feed(&self, user: &str, query: &str) -> Value {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/users/{user}/feeds/in-app-feed{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "feed: {body}");
        body
    }

    pub async fn messages_of(&self, user: &str) -> Vec<Value> {
        let (status, body) = self
            .call("GET", &format!("/v1/users/{user}/messages"), None)
            .await;
        assert_eq!(status, 200, "messages: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

fn uuid_like() -> String {
    hark_core::new_id().replace('-', "")
}

pub fn feed_step(reference: &str, markdown: &str) -> Value {
    json!({"type": "channel", "ref": reference, "channel_key": "in-app-feed",
           "template": {"markdown_body": markdown, "action_url": "{{ data.url }}"}})
}

pub fn email_channel(smtp_port: u16) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": "email", "type": "email", "provider": "smtp",
        "settings": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "from_address": "hark@example.com"}
    }))
    .expect("email channel")
}

pub fn webhook_channel() -> ChannelConfig {
    serde_json::from_value(json!({"key": "webhook", "type": "http", "provider": "webhook"}))
        .expect("webhook channel")
}

/// Declares one test per backend for each listed async fn taking a `Backend`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::support::Backend::Sqlite).await } )*
        }
        mod on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::support::Backend::Postgres).await } )*
        }
    };
}
