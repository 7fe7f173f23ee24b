//! The real `hark` binary as a child process: start it on a data directory or a fresh
//! PostgreSQL database, create credentials with its CLI, and talk to it over HTTP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const HARK: &str = env!("CARGO_BIN_EXE_hark");

pub struct Target {
    pub args: Vec<String>,
    pub _dir: tempfile::TempDir,
}

pub async fn target(postgres: bool) -> Target {
    target_with_config(postgres, "").await
}

pub async fn target_with_config(postgres: bool, extra_config: &str) -> Target {
    // A short lease so the restarted server takes over the dead one's claims quickly.
    target_with_engine(postgres, "concurrency = 8\nlease_seconds = 2", extra_config).await
}

/// A target whose config's `[engine]` table is `engine`, followed by `extra_config`.
pub async fn target_with_engine(postgres: bool, engine: &str, extra_config: &str) -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if postgres {
        let url = hark_store::testing::fresh_postgres_database()
            .await
            .expect("pg");
        args.extend(["--database-url".to_string(), url]);
    }
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, format!("[engine]\n{engine}\n{extra_config}")).expect("config");
    args.extend(["--config".to_string(), config.display().to_string()]);
    Target { args, _dir: dir }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn cli_json(args: &[String], command: &[&str]) -> Value {
    let out = Command::new(HARK)
        .args(command)
        .args(args)
        .arg("--json")
        .output()
        .expect("run hark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.trim().lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(text.trim()).expect("json line")
}

/// A `hark serve` child, killed when dropped so that a failing test leaves no server
/// (and no database connection) behind.
pub struct ServerProcess(Child);

impl std::ops::Deref for ServerProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_server(args: &[String], port: u16, log: &Path) -> ServerProcess {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(HARK)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("HARK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hark serve");
    ServerProcess(child)
}

pub async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became healthy");
}

pub async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> Value {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Creates and commits a workflow through the Management API.
pub async fn put_workflow(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    steps: Value,
) {
    let resp = http
        .put(format!("{base}/mgmt/v1/workflows/{key}?commit=true"))
        .bearer_auth(token)
        .json(&json!({"workflow": {"name": key, "steps": steps}}))
        .send()
        .await
        .expect("put workflow");
    assert!(resp.status().is_success());
}

pub async fn all_message_recipients(http: &reqwest::Client, base: &str, sk: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/messages?page_size=50");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = get_json(http, &url, sk).await;
        for m in page["items"].as_array().expect("items") {
            // A user's id, or `collection/id` for an object recipient.
            let recipient = &m["recipient"];
            out.push(match recipient.as_str() {
                Some(id) => id.to_string(),
                None => format!(
                    "{}/{}",
                    recipient["collection"].as_str().expect("collection"),
                    recipient["id"].as_str().expect("id")
                ),
            });
        }
        match page["page_info"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

/// A running `hark serve` with a secret key and a service token its CLI made.
pub struct Served {
    pub base: String,
    pub port: u16,
    pub sk: String,
    pub token: String,
    pub server: ServerProcess,
}

/// Makes a secret key (development) and a service token with the CLI, starts `hark serve`
/// on a free port (its log in the target's directory as `log`) and waits until it is
/// healthy.
pub async fn serve_with_credentials(t: &Target, log: &str) -> Served {
    let sk = cli_json(&t.args, &["keys", "create", "--environment", "development"])["secret_key"]
        .as_str()
        .expect("sk")
        .to_string();
    let token = cli_json(&t.args, &["tokens", "create"])["service_token"]
        .as_str()
        .expect("token")
        .to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = spawn_server(&t.args, port, &t._dir.path().join(log));
    wait_healthy(&base).await;
    Served {
        base,
        port,
        sk,
        token,
        server,
    }
}
