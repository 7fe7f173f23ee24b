//! The email channel over SMTP. The server comes from operator configuration, not from
//! templates, so it is not subject to the SSRF guard (a local relay is normal).

mod classify;
mod compose;

pub mod api;

use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use serde_json::json;

pub use compose::{compose, message_id_header, ComposeError};

use crate::{DeliveryAttempt, Outcome};

const SERVICE_NAME: &str = "smtp";

fn default_port() -> u16 {
    587
}

/// The `settings` of an SMTP email channel.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub from_address: String,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text. Only sensible for a relay on the same host or a test server.
    None,
    /// Upgrade with STARTTLS and refuse to continue without it (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (submissions, port 465).
    Tls,
}

/// One rendered email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailMessage {
    /// Falls back to the channel's `from_address` when empty.
    pub from: String,
    /// One address, or several separated by commas (a step's `to_address` override).
    pub to: String,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub html_body: Option<String>,
    pub text_body: Option<String>,
    /// The Hark message id; becomes the Message-ID header `<{message_id}@hark>`.
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("SMTP host is empty")]
    MissingHost,
    #[error("invalid from_address `{address}`: {detail}")]
    InvalidFrom { address: String, detail: String },
    #[error("SMTP username and password must be set together")]
    IncompleteCredentials,
    #[error("SMTP TLS setup failed: {0}")]
    Tls(String),
}

/// Sends through one pooled SMTP transport per channel.
pub struct SmtpSender {
    settings: SmtpSettings,
    builder: AsyncSmtpTransportBuilder,
    /// Built on first use rather than in `new`: lettre's pool spawns a tokio task when it
    /// is created, and channels are configured before (or outside) any runtime.
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .field("tls", &self.settings.tls)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// Validates the settings and prepares the transport. `timeout` bounds the connect
    /// and each SMTP command.
    pub fn new(settings: SmtpSettings, timeout: Duration) -> Result<Self, EmailError> {
        let host = settings.host.trim().to_string();
        if host.is_empty() {
            return Err(EmailError::MissingHost);
        }
        settings
            .from_address
            .parse::<Mailbox>()
            .map_err(|e| EmailError::InvalidFrom {
                address: settings.from_address.clone(),
                detail: e.to_string(),
            })?;
        let tls_parameters =
            || TlsParameters::new(host.clone()).map_err(|e| EmailError::Tls(e.to_string()));
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(timeout));
        match (&settings.username, &settings.password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
            }
            (None, None) => {}
            _ => return Err(EmailError::IncompleteCredentials),
        }
        Ok(Self {
            settings,
            builder,
            transport: OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Makes one attempt. A 250 is `Sent` (accepted for delivery, not yet delivered).
    pub async fn send(&self, msg: &EmailMessage) -> DeliveryAttempt {
        let server = format!("{}:{}", self.settings.host, self.settings.port);
        let request = compose::request_value(
            msg,
            &self.settings.from_address,
            &server,
            self.settings.username.as_deref(),
        );
        let message = match compose(msg, &self.settings.from_address) {
            Ok(message) => message,
            Err(e) => {
                let reason = e.to_string();
                return DeliveryAttempt {
                    outcome: Outcome::Permanent {
                        reason: reason.clone(),
                    },
                    service_name: SERVICE_NAME.to_string(),
                    request,
                    response: json!({ "error": reason }),
                };
            }
        };
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        let (outcome, response) = match transport.send(message).await {
            Ok(reply) => classify::accepted(&reply),
            Err(err) => classify::failed(&err),
        };
        DeliveryAttempt {
            outcome,
            service_name: SERVICE_NAME.to_string(),
            request,
            response,
        }
    }
}

impl Drop for SmtpSender {
    fn drop(&mut self) {
        // Dropping lettre's pool spawns a cleanup task, which panics without a runtime
        // (e.g. a registry dropped after its runtime shut down). Leaking the idle
        // connections there is harmless: the process is usually exiting.
        if tokio::runtime::Handle::try_current().is_err() {
            if let Some(transport) = self.transport.take() {
                std::mem::forget(transport);
            }
        }
    }
}
