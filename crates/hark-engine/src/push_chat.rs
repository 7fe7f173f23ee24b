//! Push and chat channels: the provider clients of `hark-channels` configured from a
//! channel's settings, fed with the tokens and connections of the recipient's channel
//! data, and the outcomes of the per-token or per-connection attempts folded into one
//! message status.

use std::time::Duration;

use hark_channels::chat::discord::{self, DiscordConnection};
use hark_channels::chat::slack::{self, SlackConnection};
use hark_channels::chat::{teams, ChatMessage};
use hark_channels::outbound::OutboundPolicy;
use hark_channels::provider::ProviderHttp;
use hark_channels::push::apns::{ApnsClient, ApnsSettings};
use hark_channels::push::expo::{self, ExpoSettings};
use hark_channels::push::fcm::{FcmClient, FcmSettings};
use hark_channels::push::onesignal::{self, OneSignalSettings};
use hark_channels::push::webpush::{Subscription, WebPushClient, WebPushSettings};
use hark_channels::push::{PushMessage, TokenAttempt};
use hark_channels::{DeliveryAttempt, Outcome};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Push providers by their configuration name.
pub const PUSH_PROVIDERS: &[&str] = &["expo", "onesignal", "fcm", "apns", "webpush"];
/// Chat providers by their configuration name.
pub const CHAT_PROVIDERS: &[&str] = &["slack", "ms_teams", "discord"];

enum PushProvider {
    Expo(ExpoSettings),
    OneSignal(OneSignalSettings),
    Fcm(Box<FcmClient>),
    Apns(Box<ApnsClient>),
    WebPush(Box<WebPushClient>),
}

/// One configured push channel.
pub struct PushSender {
    provider: PushProvider,
    http: ProviderHttp,
    /// Remove tokens the provider reports dead from the recipient's channel data.
    pub token_deregistration: bool,
    /// The channel's payload overrides; a step's own replace them.
    pub payload_overrides: Option<Value>,
}

fn parse<T: DeserializeOwned>(settings: &Value) -> Result<T, String> {
    serde_json::from_value(settings.clone()).map_err(|e| e.to_string())
}

/// `token_deregistration` (default on), read by both kinds of channel.
fn flag(settings: &Value, name: &str, default: bool) -> Result<bool, String> {
    match settings.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{name}` must be true or false")),
    }
}

impl PushSender {
    /// Reads `settings` for `provider` (one of [`PUSH_PROVIDERS`]). APNs speaks only
    /// HTTP/2, so it gets its own client with the same policy and timeout.
    pub fn new(
        provider: &str,
        settings: &Value,
        http: ProviderHttp,
        policy: OutboundPolicy,
        timeout: Duration,
    ) -> Result<Self, String> {
        let settings = match settings {
            Value::Null => json!({}),
            other => other.clone(),
        };
        let provider = match provider {
            "expo" => PushProvider::Expo(parse(&settings)?),
            "onesignal" => {
                let s: OneSignalSettings = parse(&settings)?;
                if s.app_id.trim().is_empty() || s.api_key.trim().is_empty() {
                    return Err("`app_id` and `api_key` can't be blank".into());
                }
                PushProvider::OneSignal(s)
            }
            "fcm" => {
                let s: FcmSettings = parse(&settings)?;
                let client = FcmClient::new(&s, http.clone()).map_err(|e| e.to_string())?;
                PushProvider::Fcm(Box::new(client))
            }
            "apns" => {
                let s: ApnsSettings = parse(&settings)?;
                let http2 = ProviderHttp::new_http2(policy, timeout).map_err(|e| e.to_string())?;
                PushProvider::Apns(Box::new(
                    ApnsClient::new(s, http2).map_err(|e| e.to_string())?,
                ))
            }
            "webpush" => {
                let s: WebPushSettings = parse(&settings)?;
                PushProvider::WebPush(Box::new(
                    WebPushClient::new(s, http.clone()).map_err(|e| e.to_string())?,
                ))
            }
            other => return Err(format!("unknown push provider `{other}`")),
        };
        Ok(Self {
            provider,
            http,
            token_deregistration: flag(&settings, "token_deregistration", true)?,
            payload_overrides: settings
                .get("payload_overrides")
                .filter(|v| v.is_object())
                .cloned(),
        })
    }

    /// Sends to every token, one request each. Web Push tokens are the browser's
    /// `PushSubscription` as JSON text.
    pub async fn send(&self, tokens: &[String], message: &PushMessage) -> Vec<TokenAttempt> {
        match &self.provider {
            PushProvider::Expo(s) => expo::send(&self.http, s, tokens, message).await,
            PushProvider::OneSignal(s) => onesignal::send(&self.http, s, tokens, message).await,
            PushProvider::Fcm(client) => client.send(tokens, message).await,
            PushProvider::Apns(client) => client.send(tokens, message).await,
            PushProvider::WebPush(client) => {
                let mut out = Vec::with_capacity(tokens.len());
                for token in tokens {
                    let Ok(subscription) = serde_json::from_str::<Subscription>(token) else {
                        let attempt = hark_channels::provider::rejected(
                            "web_push",
                            "the token is not a PushSubscription (endpoint and keys)".into(),
                        );
                        out.push(TokenAttempt::new(token, attempt, true));
                        continue;
                    };
                    // The client names attempts by endpoint; channel data holds the JSON.
                    for mut attempt in client.send(&[subscription], message).await {
                        attempt.token = token.clone();
                        out.push(attempt);
                    }
                }
                out
            }
        }
    }
}

enum ChatProvider {
    Slack { access_token: Option<String> },
    Teams,
    Discord { bot_token: Option<String> },
}

/// One configured chat channel.
pub struct ChatSender {
    provider: ChatProvider,
    base_url: Option<String>,
    sandbox: bool,
    http: ProviderHttp,
}

impl ChatSender {
    pub fn new(provider: &str, settings: &Value, http: ProviderHttp) -> Result<Self, String> {
        let text = |name: &str| {
            settings
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let provider = match provider {
            "slack" => ChatProvider::Slack {
                access_token: text("access_token"),
            },
            "ms_teams" | "microsoft_teams" => ChatProvider::Teams,
            "discord" => ChatProvider::Discord {
                bot_token: text("bot_token"),
            },
            other => return Err(format!("unknown chat provider `{other}`")),
        };
        Ok(Self {
            provider,
            base_url: text("base_url"),
            sandbox: flag(settings, "sandbox", false)?,
            http,
        })
    }

    fn service(&self) -> &'static str {
        match self.provider {
            ChatProvider::Slack { .. } => "slack",
            ChatProvider::Teams => "microsoft_teams",
            ChatProvider::Discord { .. } => "discord",
        }
    }

    /// Posts to one connection of the recipient's channel data (`data` is the whole
    /// document, for Slack's shared `token`).
    pub async fn send(
        &self,
        data: &Value,
        connection: &Value,
        message: &ChatMessage,
    ) -> DeliveryAttempt {
        let service = self.service();
        let field = |name: &str| {
            connection
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let webhook = connection
            .pointer("/incoming_webhook/url")
            .and_then(Value::as_str)
            .map(str::to_string);
        if self.sandbox {
            return DeliveryAttempt {
                outcome: Outcome::NotSent {
                    reason: "sandbox mode: the provider was not called".into(),
                },
                service_name: service.into(),
                request: json!({}),
                response: json!({"sandbox": true}),
            };
        }
        let base = self.base_url.as_deref();
        let missing = |what: &str| hark_channels::provider::rejected(service, what.to_string());
        match &self.provider {
            ChatProvider::Slack { access_token } => {
                let connection = match webhook {
                    Some(url) => SlackConnection::IncomingWebhook { url },
                    None => {
                        let token = field("access_token")
                            .or_else(|| {
                                data.pointer("/token/access_token")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                            .or_else(|| access_token.clone());
                        let channel = field("channel_id").or_else(|| field("user_id"));
                        match (token, channel) {
                            (Some(access_token), Some(channel_id)) => SlackConnection::Bot {
                                access_token,
                                channel_id,
                            },
                            _ => {
                                return missing(
                                    "the Slack connection has no access token or channel",
                                )
                            }
                        }
                    }
                };
                slack::send(&self.http, base, &connection, message).await
            }
            ChatProvider::Teams => match webhook {
                Some(url) => teams::send(&self.http, &url, message).await,
                None => missing("the Teams connection has no incoming webhook URL"),
            },
            ChatProvider::Discord { bot_token } => {
                let connection = match (webhook, field("channel_id"), bot_token) {
                    (Some(url), _, _) => DiscordConnection::IncomingWebhook { url },
                    (None, Some(channel_id), Some(bot_token)) => DiscordConnection::Bot {
                        bot_token: bot_token.clone(),
                        channel_id,
                    },
                    _ => return missing(
                        "the Discord connection has no webhook, or the channel has no bot_token",
                    ),
                };
                discord::send(&self.http, base, &connection, message).await
            }
        }
    }
}

/// Folds the outcomes of one message's attempts (one per token or connection) into the
/// message's result: sent when any was accepted (a retry would repeat those), otherwise
/// retried when any may succeed later, otherwise final. Each attempt keeps its own
/// delivery log; only the status is shared. `None` when nothing was attempted.
pub fn combined_outcome(attempts: &[DeliveryAttempt]) -> Option<Outcome> {
    if let [single] = attempts {
        return Some(single.outcome.clone());
    }
    let first = attempts.first()?;
    let reasons: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Retryable { reason, .. }
            | Outcome::Permanent { reason }
            | Outcome::NotSent { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    let outcome = if let Some(a) = attempts.iter().find(|a| a.outcome.is_success()) {
        a.outcome.clone()
    } else if attempts
        .iter()
        .all(|a| matches!(a.outcome, Outcome::NotSent { .. }))
    {
        first.outcome.clone()
    } else if attempts
        .iter()
        .any(|a| matches!(a.outcome, Outcome::Retryable { .. }))
    {
        let retry_after_ms = attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Outcome::Retryable { retry_after_ms, .. } => retry_after_ms,
                _ => None,
            })
            .max();
        Outcome::Retryable {
            reason: reasons.join("; "),
            retry_after_ms,
        }
    } else {
        Outcome::Permanent {
            reason: reasons.join("; "),
        }
    };
    Some(outcome)
}
