//! The channels this server can send through, built once from configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hark_channels::callbacks::CallbackVerifier;
use hark_channels::email::api::{EmailApiSender, EMAIL_API_PROVIDERS};
use hark_channels::email::{SmtpSender, SmtpSettings};
use hark_channels::outbound::OutboundPolicy;
use hark_channels::provider::ProviderHttp;
use hark_channels::sms::{SmsSender, SMS_PROVIDERS};
use hark_channels::webhook::WebhookSender;
use hark_core::workflow::ChannelType;

use crate::push_chat::{ChatSender, PushSender, CHAT_PROVIDERS, PUSH_PROVIDERS};
use crate::tracking::TrackingSwitches;
use serde::Deserialize;
use serde_json::Value;

/// The key of the in-app feed channel that exists even without configuration.
pub const DEFAULT_FEED_CHANNEL_KEY: &str = "in-app-feed";

/// Namespace for deriving stable channel ids from channel keys, so a channel keeps its id
/// across restarts and nodes without being stored.
const CHANNEL_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x6b, 0x1d, 0x2f, 0x51, 0x0c, 0x7e, 0x4a, 0x3b, 0x9e, 0x55, 0x21, 0x8a, 0x40, 0xd2, 0x13, 0x77,
]);

/// One `[[channels]]` entry of the config file.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    pub key: String,
    #[serde(rename = "type")]
    pub channel_type: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<Value>,
    /// `[channels.environments.<slug>]`: settings for runs in that environment, merged
    /// key by key over `settings` (sandbox in development, other credentials…).
    #[serde(default)]
    pub environments: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelConfigError {
    #[error("channel `{key}`: unknown type `{channel_type}` (expected email, sms, push, chat, in_app_feed or http)")]
    UnknownType { key: String, channel_type: String },
    #[error("channel `{key}`: provider `{provider}` is not supported for type `{channel_type}`")]
    UnsupportedProvider {
        key: String,
        channel_type: String,
        provider: String,
    },
    #[error("channel `{key}`: invalid settings: {detail}")]
    BadSettings { key: String, detail: String },
    #[error("channel key `{0}` is configured twice")]
    Duplicate(String),
    #[error("channel `{key}`, environment `{environment}`: invalid settings: {detail}")]
    BadEnvironmentSettings {
        key: String,
        environment: String,
        detail: String,
    },
}

/// How a channel delivers.
pub enum Sender {
    /// The message row is the delivery.
    InAppFeed,
    Smtp {
        sender: Box<SmtpSender>,
        from_address: String,
    },
    Webhook,
    /// An email provider's HTTP API (SendGrid, Postmark, Mailgun, Resend, SES).
    EmailApi(Box<EmailApiSender>),
    /// An SMS provider's HTTP API.
    Sms(Box<SmsSender>),
    /// A push provider, sending to the tokens of the recipient's channel data.
    Push(Box<PushSender>),
    /// A chat tool, posting to the connections of the recipient's channel data.
    Chat(Box<ChatSender>),
}

pub struct Channel {
    pub id: String,
    pub key: String,
    pub name: String,
    pub channel_type: ChannelType,
    pub provider: String,
    pub sender: Sender,
    /// How the provider's status callbacks to this channel are authenticated; `None`
    /// when the settings configure no callback secret.
    pub status_callbacks: Option<CallbackVerifier>,
    /// Link and open tracking as the channel's settings set them (steps may override).
    pub tracking: TrackingSwitches,
    /// The same channel with its `[channels.environments.<slug>]` settings, by slug.
    pub environments: HashMap<String, Arc<Channel>>,
    /// `sandbox = true`: messages are recorded as `not_sent` and the provider is not called.
    pub sandbox: bool,
}

impl Channel {
    /// The channel as an environment's runs use it, by slug (the base channel when the
    /// configuration has no settings for that environment).
    pub fn variant<'a>(self: &'a Arc<Self>, slug: &str) -> &'a Arc<Channel> {
        self.environments.get(slug).unwrap_or(self)
    }
}

pub struct ChannelRegistry {
    channels: Vec<Arc<Channel>>,
    by_key: HashMap<String, Arc<Channel>>,
    by_id: HashMap<String, Arc<Channel>>,
    /// Shared by every webhook channel: one connection pool, one SSRF policy.
    pub webhook: WebhookSender,
    /// Environment slugs by environment id, for picking a channel's environment
    /// settings (see [`ChannelRegistry::bind_environment`]).
    environment_slugs: HashMap<String, String>,
}

pub fn channel_id_for_key(key: &str) -> String {
    uuid::Uuid::new_v5(&CHANNEL_ID_NAMESPACE, key.as_bytes()).to_string()
}

impl ChannelRegistry {
    pub fn build(
        configs: &[ChannelConfig],
        policy: OutboundPolicy,
        delivery_timeout: Duration,
    ) -> Result<Self, ChannelConfigError> {
        let webhook = WebhookSender::new(policy, delivery_timeout).map_err(|e| {
            ChannelConfigError::BadSettings {
                key: "webhook".into(),
                detail: e.to_string(),
            }
        })?;
        let providers = ProviderHttp::new(policy, delivery_timeout).map_err(|e| {
            ChannelConfigError::BadSettings {
                key: "providers".into(),
                detail: e.to_string(),
            }
        })?;
        let mut registry = ChannelRegistry {
            channels: Vec::new(),
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            webhook,
            environment_slugs: HashMap::new(),
        };
        for config in configs {
            let mut channel = build_channel(config, delivery_timeout, &providers, policy)?;
            // Every variant is built now, so bad settings stop the start, not a send.
            for (environment, overrides) in &config.environments {
                let bad = |detail: String| ChannelConfigError::BadEnvironmentSettings {
                    key: config.key.clone(),
                    environment: environment.clone(),
                    detail,
                };
                let merged = ChannelConfig {
                    settings: Some(
                        merge_settings(config.settings.as_ref(), overrides).map_err(bad)?,
                    ),
                    environments: BTreeMap::new(),
                    ..config.clone()
                };
                let variant = build_channel(&merged, delivery_timeout, &providers, policy)
                    .map_err(|e| match e {
                        ChannelConfigError::BadSettings { detail, .. } => bad(detail),
                        other => other,
                    })?;
                channel
                    .environments
                    .insert(environment.clone(), Arc::new(variant));
            }
            registry.insert(channel)?;
        }
        if !registry
            .channels
            .iter()
            .any(|c| c.channel_type == ChannelType::InAppFeed)
        {
            registry.insert(Channel {
                id: channel_id_for_key(DEFAULT_FEED_CHANNEL_KEY),
                key: DEFAULT_FEED_CHANNEL_KEY.to_string(),
                name: "In-app feed".to_string(),
                channel_type: ChannelType::InAppFeed,
                provider: "knock".to_string(),
                sender: Sender::InAppFeed,
                status_callbacks: None,
                tracking: TrackingSwitches::default(),
                environments: HashMap::new(),
                sandbox: false,
            })?;
        }
        Ok(registry)
    }

    fn insert(&mut self, channel: Channel) -> Result<(), ChannelConfigError> {
        if self.by_key.contains_key(&channel.key) {
            return Err(ChannelConfigError::Duplicate(channel.key));
        }
        let channel = Arc::new(channel);
        self.by_key.insert(channel.key.clone(), channel.clone());
        self.by_id.insert(channel.id.clone(), channel.clone());
        self.channels.push(channel);
        Ok(())
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<Channel>> {
        self.by_key.get(key)
    }

    /// The channel `key` as runs in environment `environment_id` use it: with that
    /// environment's settings when the configuration has any, the base channel otherwise.
    pub fn for_environment(&self, key: &str, environment_id: &str) -> Option<&Arc<Channel>> {
        let channel = self.by_key.get(key)?;
        Some(match self.environment_slugs.get(environment_id) {
            Some(slug) => channel.variant(slug),
            None => channel,
        })
    }

    /// Tells the registry which environment id a slug has (ids live in the database;
    /// the configuration names environments by slug).
    pub fn bind_environment(&mut self, environment_id: &str, slug: &str) {
        self.environment_slugs
            .insert(environment_id.to_string(), slug.to_string());
    }

    /// The environment slugs the configuration gives channel settings for.
    pub fn configured_environments(&self) -> std::collections::BTreeSet<String> {
        self.channels
            .iter()
            .flat_map(|c| c.environments.keys().cloned())
            .collect()
    }

    /// Finds a channel by id or, as a convenience for hand-written requests, by key.
    pub fn by_id_or_key(&self, id_or_key: &str) -> Option<&Arc<Channel>> {
        self.by_id
            .get(id_or_key)
            .or_else(|| self.by_key.get(id_or_key))
    }

    pub fn all(&self) -> &[Arc<Channel>] {
        &self.channels
    }

    pub fn type_of(&self, key: &str) -> Option<ChannelType> {
        self.by_key.get(key).map(|c| c.channel_type)
    }
}

fn build_channel(
    config: &ChannelConfig,
    delivery_timeout: Duration,
    providers: &ProviderHttp,
    policy: OutboundPolicy,
) -> Result<Channel, ChannelConfigError> {
    let channel_type = ChannelType::parse(&config.channel_type).ok_or_else(|| {
        ChannelConfigError::UnknownType {
            key: config.key.clone(),
            channel_type: config.channel_type.clone(),
        }
    })?;
    let default_provider = match channel_type {
        ChannelType::InAppFeed => "knock",
        ChannelType::Email => "smtp",
        ChannelType::Http => "webhook",
        _ => "",
    };
    let provider = config
        .provider
        .clone()
        .unwrap_or_else(|| default_provider.to_string());
    let unsupported = || ChannelConfigError::UnsupportedProvider {
        key: config.key.clone(),
        channel_type: config.channel_type.clone(),
        provider: provider.clone(),
    };
    let bad_settings = |detail: String| ChannelConfigError::BadSettings {
        key: config.key.clone(),
        detail,
    };
    let sender = match (channel_type, provider.as_str()) {
        (ChannelType::InAppFeed, "knock" | "in_app_feed" | "in-app-feed") => Sender::InAppFeed,
        (ChannelType::Http, "webhook" | "http") => Sender::Webhook,
        (ChannelType::Email, "smtp") => {
            let settings_value = config.settings.clone().unwrap_or(Value::Null);
            let settings: SmtpSettings = serde_json::from_value(settings_value).map_err(|e| {
                ChannelConfigError::BadSettings {
                    key: config.key.clone(),
                    detail: e.to_string(),
                }
            })?;
            let from_address = settings.from_address.clone();
            let sender = SmtpSender::new(settings, delivery_timeout).map_err(|e| {
                ChannelConfigError::BadSettings {
                    key: config.key.clone(),
                    detail: e.to_string(),
                }
            })?;
            Sender::Smtp {
                sender: Box::new(sender),
                from_address,
            }
        }
        (ChannelType::Email, name) if EMAIL_API_PROVIDERS.contains(&name) => {
            let settings = config.settings.clone().unwrap_or(Value::Null);
            let http = channel_http(&settings, providers, policy).map_err(bad_settings)?;
            let sender = EmailApiSender::new(name, &settings, http)
                .map_err(|e| bad_settings(e.to_string()))?;
            Sender::EmailApi(Box::new(sender))
        }
        (ChannelType::Sms, name) if SMS_PROVIDERS.contains(&name) => {
            let settings = config.settings.clone().unwrap_or(Value::Null);
            let http = channel_http(&settings, providers, policy).map_err(bad_settings)?;
            let sender =
                SmsSender::new(name, &settings, http).map_err(|e| bad_settings(e.to_string()))?;
            Sender::Sms(Box::new(sender))
        }
        (ChannelType::Push, name) if PUSH_PROVIDERS.contains(&name) => {
            let settings = config.settings.clone().unwrap_or(Value::Null);
            let http = channel_http(&settings, providers, policy).map_err(bad_settings)?;
            let timeout = channel_timeout(&settings).unwrap_or(delivery_timeout);
            let sender =
                PushSender::new(name, &settings, http, policy, timeout).map_err(bad_settings)?;
            Sender::Push(Box::new(sender))
        }
        (ChannelType::Chat, name) if CHAT_PROVIDERS.contains(&name) => {
            let settings = config.settings.clone().unwrap_or(Value::Null);
            let http = channel_http(&settings, providers, policy).map_err(bad_settings)?;
            let sender = ChatSender::new(name, &settings, http).map_err(bad_settings)?;
            Sender::Chat(Box::new(sender))
        }
        _ => return Err(unsupported()),
    };
    let status_callbacks = CallbackVerifier::from_settings(
        &provider,
        config.settings.as_ref().unwrap_or(&Value::Null),
    )
    .map_err(bad_settings)?;
    let tracking = TrackingSwitches::from_channel_settings(
        channel_type,
        config.settings.as_ref().unwrap_or(&Value::Null),
    )
    .map_err(bad_settings)?;
    Ok(Channel {
        id: channel_id_for_key(&config.key),
        key: config.key.clone(),
        name: config.name.clone().unwrap_or_else(|| config.key.clone()),
        channel_type,
        provider,
        sender,
        status_callbacks,
        tracking,
        environments: HashMap::new(),
        sandbox: config
            .settings
            .as_ref()
            .and_then(|s| s.get("sandbox"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// `overrides` (an environment's table) merged key by key over the base settings.
fn merge_settings(base: Option<&Value>, overrides: &Value) -> Result<Value, String> {
    let Value::Object(overrides) = overrides else {
        return Err("the environment's settings must be a table".into());
    };
    let mut merged = match base {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (key, value) in overrides {
        merged.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(merged))
}

/// The channel's own `timeout_seconds`, when valid (checked by [`channel_http`]).
fn channel_timeout(settings: &Value) -> Option<Duration> {
    settings
        .get("timeout_seconds")
        .and_then(Value::as_u64)
        .filter(|s| (1..=300).contains(s))
        .map(Duration::from_secs)
}

/// The shared provider client, or one of the channel's own when its settings set
/// `timeout_seconds` (a slow provider should not need a long timeout for every channel).
fn channel_http(
    settings: &Value,
    shared: &ProviderHttp,
    policy: OutboundPolicy,
) -> Result<ProviderHttp, String> {
    match settings.get("timeout_seconds") {
        None | Some(Value::Null) => Ok(shared.clone()),
        Some(value) => {
            let seconds = value
                .as_u64()
                .filter(|s| (1..=300).contains(s))
                .ok_or("`timeout_seconds` must be a whole number from 1 to 300")?;
            ProviderHttp::new(policy, Duration::from_secs(seconds)).map_err(|e| e.to_string())
        }
    }
}
