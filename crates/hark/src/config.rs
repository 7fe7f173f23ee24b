//! The TOML configuration file and how flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hark_engine::ChannelConfig;
use serde::Deserialize;

use crate::StoreArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// `all`, `api` or `worker`; `--role` and `HARK_ROLE` override it.
    pub role: Option<crate::serve::Role>,
    #[serde(default)]
    pub outbound: OutboundConfig,
    #[serde(default)]
    pub engine: EngineFileConfig,
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub tracking: TrackingFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingFileConfig {
    /// This server as recipients reach it (e.g. `https://hark.example.com`): link and
    /// open tracking URLs start with it. Default: `http://` and the listen address.
    pub public_url: Option<String>,
}

/// The base of tracking URLs: the configured public URL, which must be an absolute
/// `http(s)` URL, or the listen address.
pub fn tracking_public_url(
    config: &TrackingFileConfig,
    listen: SocketAddr,
) -> anyhow::Result<String> {
    let Some(configured) = config.public_url.as_deref() else {
        return Ok(format!("http://{listen}"));
    };
    let parsed = url::Url::parse(configured)
        .with_context(|| format!("[tracking] public_url `{configured}` is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        anyhow::bail!("[tracking] public_url `{configured}` must be an http or https URL");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        anyhow::bail!("[tracking] public_url `{configured}` must not have a query or fragment");
    }
    Ok(configured.trim_end_matches('/').to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`); traces are off
    /// without it.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Allow webhook URLs that resolve to loopback, private or link-local addresses.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Timeout for one provider call, in seconds (default 15).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFileConfig {
    pub concurrency: Option<usize>,
    pub poll_interval_ms: Option<u64>,
    pub lease_seconds: Option<i64>,
}

pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The database URL: flag, then config file, then SQLite in the data directory.
pub fn database_url(args: &StoreArgs, file: &FileConfig) -> anyhow::Result<String> {
    if let Some(url) = args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone())
    {
        return Ok(url);
    }
    let dir = args
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(".hark"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("hark.db").display()))
}

pub async fn open_store(
    args: &StoreArgs,
) -> anyhow::Result<(std::sync::Arc<dyn hark_store::Store>, FileConfig)> {
    let file = load(args.config.as_deref())?;
    let url = database_url(args, &file)?;
    let store = hark_store::connect(&url)
        .await
        .with_context(|| format!("opening the store at {}", redact_url(&url)))?;
    store
        .ensure_default_environments(hark_core::Clock::now_ms(&hark_core::SystemClock))
        .await?;
    Ok((store, file))
}

/// Hides a password in a database URL before it reaches a log line.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let config: FileConfig = toml::from_str(
            r#"
            [outbound]
            allow_private_networks = true

            [[channels]]
            key = "email"
            type = "email"
            provider = "smtp"
            [channels.settings]
            host = "127.0.0.1"
            port = 2525
            tls = "none"
            from_address = "hark@example.com"

            [[channels]]
            key = "webhook"
            type = "http"
            provider = "webhook"
            "#,
        )
        .expect("valid config");
        assert!(config.outbound.allow_private_networks);
        assert_eq!(config.channels.len(), 2);
        let settings = config.channels[0].settings.as_ref().expect("settings");
        assert_eq!(settings["port"], serde_json::json!(2525));
    }

    #[test]
    fn provider_channels_build_and_bad_settings_are_named() {
        let config: FileConfig = toml::from_str(
            r#"
            [[channels]]
            key = "sendgrid"
            type = "email"
            provider = "sendgrid"
            [channels.settings]
            api_key = "SG.x"
            from_address = "hello@example.com"
            json_overrides = { categories = ["orders"] }

            [[channels]]
            key = "sms"
            type = "sms"
            provider = "twilio"
            [channels.settings]
            account_sid = "AC1"
            auth_token = "t"
            from_number = "+15555550100"
            timeout_seconds = 5
            "#,
        )
        .expect("valid config");
        let policy = hark_channels::outbound::OutboundPolicy::default();
        let timeout = std::time::Duration::from_secs(15);
        let registry = hark_engine::ChannelRegistry::build(&config.channels, policy, timeout)
            .expect("channels build");
        assert_eq!(registry.by_key("sms").expect("sms").provider, "twilio");

        let mut broken = config.channels.clone();
        broken[1].settings = Some(serde_json::json!({"account_sid": "AC1", "auth_token": "t"}));
        let err = hark_engine::ChannelRegistry::build(&broken, policy, timeout)
            .err()
            .expect("missing sender refused");
        assert_eq!(
            err.to_string(),
            "channel `sms`: invalid settings: `from_number` can't be blank"
        );
    }

    #[test]
    fn push_and_chat_channels_build() {
        let config: FileConfig = toml::from_str(
            r#"
            [[channels]]
            key = "push"
            type = "push"
            provider = "expo"
            [channels.settings]
            token_deregistration = false
            payload_overrides = { priority = "high" }

            [[channels]]
            key = "slack"
            type = "chat"
            provider = "slack"

            [[channels]]
            key = "onesignal"
            type = "push"
            provider = "onesignal"
            [channels.settings]
            app_id = "app"
            api_key = ""
            "#,
        )
        .expect("valid config");
        let policy = hark_channels::outbound::OutboundPolicy::default();
        let timeout = std::time::Duration::from_secs(15);
        let err = hark_engine::ChannelRegistry::build(&config.channels, policy, timeout)
            .err()
            .expect("blank key refused");
        assert_eq!(
            err.to_string(),
            "channel `onesignal`: invalid settings: `app_id` and `api_key` can't be blank"
        );
        let registry = hark_engine::ChannelRegistry::build(&config.channels[..2], policy, timeout)
            .expect("channels build");
        assert_eq!(registry.by_key("push").expect("push").provider, "expo");
        assert_eq!(registry.by_key("slack").expect("slack").provider, "slack");
    }

    #[test]
    fn environment_settings_are_merged_and_each_variant_is_checked() {
        let config: FileConfig = toml::from_str(
            r#"
            [[channels]]
            key = "sms"
            type = "sms"
            provider = "twilio"
            [channels.settings]
            account_sid = "AC1"
            auth_token = "t"
            from_number = "+15555550100"
            [channels.environments.development]
            sandbox = true
            [channels.environments.production]
            from_number = ""
            "#,
        )
        .expect("valid config");
        assert_eq!(
            config.channels[0].environments["development"]["sandbox"],
            serde_json::json!(true)
        );
        let policy = hark_channels::outbound::OutboundPolicy::default();
        let timeout = std::time::Duration::from_secs(15);
        let err = hark_engine::ChannelRegistry::build(&config.channels, policy, timeout)
            .err()
            .expect("production's blank sender refused");
        assert_eq!(
            err.to_string(),
            "channel `sms`, environment `production`: invalid settings: `from_number` can't be blank"
        );
        let mut fixed = config.channels.clone();
        fixed[0].environments.remove("production");
        let registry =
            hark_engine::ChannelRegistry::build(&fixed, policy, timeout).expect("channels build");
        let sms = registry.by_key("sms").expect("sms");
        assert_eq!(
            registry
                .configured_environments()
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["development".to_string()]
        );
        assert!(sms.environments.contains_key("development"));
    }

    #[test]
    fn tracking_public_url_defaults_to_the_listen_address() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let none = TrackingFileConfig::default();
        assert_eq!(
            tracking_public_url(&none, listen).expect("default"),
            "http://127.0.0.1:8080"
        );
        let config: FileConfig =
            toml::from_str("[tracking]\npublic_url = \"https://hark.example.com/\"")
                .expect("valid config");
        assert_eq!(
            tracking_public_url(&config.tracking, listen).expect("configured"),
            "https://hark.example.com"
        );
        for bad in ["hark.example.com", "ftp://x", "https://x/?a=b"] {
            let config = TrackingFileConfig {
                public_url: Some(bad.to_string()),
            };
            assert!(tracking_public_url(&config, listen).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_unknown_fields() {
        assert!(toml::from_str::<FileConfig>("[outbound]\nallow_private = true").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
