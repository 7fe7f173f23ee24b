//! One or more real `hark serve` processes sharing one store, started on loopback with
//! keys, a Management token and a webhook channel that may call loopback sinks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sqlx::{Connection, Row};

use crate::measure::{proc_cpu_seconds, proc_memory_mib};

/// A store chosen before any server runs, so a figure can seed it directly.
pub struct Prepared {
    pub dir: tempfile::TempDir,
    /// The database URL the servers (and direct queries) use.
    pub url: String,
}

impl Prepared {
    pub async fn new(store: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = match store {
            "sqlite" => format!("sqlite://{}", dir.path().join("hark.db").display()),
            "postgres" => hark_store::testing::fresh_postgres_database().await?,
            other => bail!("unknown store `{other}`"),
        };
        Ok(Self { dir, url })
    }
}

pub struct Node {
    child: Child,
    pub base: String,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub secret_key: String,
    /// The publishable key browser clients (and their realtime sockets) use.
    pub public_key: String,
    pub service_token: String,
    pub url: String,
    /// Spawn → first successful health check of the first node.
    pub cold_start: Duration,
    /// Resident memory of the first node right after it answered its first health check.
    pub idle_rss_mib: f64,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

const CONFIG: &str = r#"
[outbound]
allow_private_networks = true

[[channels]]
key = "webhook"
type = "http"
provider = "webhook"
"#;

fn cli_json(hark: &str, args: &[&str], store_args: &[String]) -> anyhow::Result<Value> {
    let out = Command::new(hark)
        .args(args)
        .arg("--json")
        .args(store_args)
        .output()
        .with_context(|| format!("running hark {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "hark {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("server at {base} did not start");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Cluster {
    /// Starts `nodes` servers on the prepared store (more than one only on PostgreSQL).
    pub async fn start(hark: &str, prepared: Prepared, nodes: usize) -> anyhow::Result<Self> {
        Self::start_with_role(hark, prepared, nodes, "all").await
    }

    /// Like [`Cluster::start`], every node in `role` (`all`, `api`: no workers).
    pub async fn start_with_role(
        hark: &str,
        prepared: Prepared,
        nodes: usize,
        role: &str,
    ) -> anyhow::Result<Self> {
        if nodes > 1 && prepared.url.starts_with("sqlite:") {
            bail!("several nodes need PostgreSQL");
        }
        let config: PathBuf = prepared.dir.path().join("hark.toml");
        std::fs::write(&config, CONFIG)?;
        let store_args = vec![
            "--data-dir".to_string(),
            prepared.dir.path().display().to_string(),
            "--database-url".to_string(),
            prepared.url.clone(),
            "--config".to_string(),
            config.display().to_string(),
        ];
        let keys = cli_json(
            hark,
            &["keys", "create", "--environment", "development"],
            &store_args,
        )?;
        let token = cli_json(hark, &["tokens", "create"], &store_args)?;
        let http = reqwest::Client::new();
        let mut started = Vec::new();
        let mut cold_start = Duration::ZERO;
        let mut idle_rss_mib = 0.0;
        for i in 0..nodes.max(1) {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let spawned = Instant::now();
            let child = Command::new(hark)
                .arg("serve")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--role", role])
                .args(&store_args)
                .env("HARK_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context("spawning hark serve")?;
            let node = Node {
                child,
                base: format!("http://127.0.0.1:{port}"),
            };
            let pid = node.child.id();
            let base = node.base.clone();
            started.push(node);
            wait_healthy(&http, &base).await?;
            if i == 0 {
                cold_start = spawned.elapsed();
                idle_rss_mib = proc_memory_mib(pid, "VmRSS:");
            }
        }
        Ok(Self {
            nodes: started,
            secret_key: keys["secret_key"].as_str().unwrap_or_default().to_string(),
            public_key: keys["public_key"].as_str().unwrap_or_default().to_string(),
            service_token: token["service_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            url: prepared.url,
            cold_start,
            idle_rss_mib,
            _dir: prepared.dir,
        })
    }

    /// The node request `n` goes to: requests are spread round-robin.
    pub fn base(&self, n: u64) -> &str {
        &self.nodes[n as usize % self.nodes.len()].base
    }

    /// Creates and commits a workflow through the Management API.
    pub async fn put_workflow(&self, key: &str, steps: Value) -> anyhow::Result<()> {
        let resp = reqwest::Client::new()
            .put(format!(
                "{}/mgmt/v1/workflows/{key}?commit=true",
                self.base(0)
            ))
            .bearer_auth(&self.service_token)
            .json(&json!({"workflow": {"name": key, "steps": steps}}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("creating workflow {key} failed: {}", resp.text().await?);
        }
        Ok(())
    }

    /// The highest peak resident memory (`VmHWM`) of any node, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| proc_memory_mib(n.child.id(), "VmHWM:"))
            .fold(0.0, f64::max)
    }

    /// CPU time the nodes have used so far, in seconds.
    pub fn nodes_cpu_seconds(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| proc_cpu_seconds(n.child.id()))
            .sum()
    }

    /// Counts rows straight from the database (`sql` must select one integer `n`).
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.integers(sql)
            .await?
            .first()
            .copied()
            .context("the query returned no row")
    }

    /// Every row's integer `n` of `sql`, read straight from the database.
    pub async fn integers(&self, sql: &str) -> anyhow::Result<Vec<i64>> {
        let rows = if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
            let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
            rows.iter()
                .map(|r| r.try_get("n"))
                .collect::<Result<_, _>>()?
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
            rows.iter()
                .map(|r| r.try_get("n"))
                .collect::<Result<_, _>>()?
        };
        Ok(rows)
    }
}
