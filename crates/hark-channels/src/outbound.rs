//! The guard every user-directed outbound request goes through: which URLs may be called
//! at all, and the one HTTP client that enforces it at connect time.

mod body;
mod ip;
mod resolver;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

pub use body::{read_bounded, BoundedBody, LOGGED_BODY_LIMIT, READ_BODY_LIMIT};
pub use ip::is_forbidden_ip;
pub use resolver::GuardedResolver;

/// Connecting should be quick; a slow connect is a sign of a black-holed address and we
/// would rather retry later than hold a worker for the whole request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where outbound requests built from templates (webhook URLs) may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Lets requests reach loopback and private ranges. Off by default: turning it on
    /// lets anyone who can edit a workflow probe the operator's network.
    pub allow_private_networks: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("URL scheme `{0}` is not allowed (only http and https)")]
    UnsupportedScheme(String),
    #[error("URL has no host")]
    MissingHost,
    #[error("refusing to connect to `{host}`: address {ip} is in a private or reserved range")]
    ForbiddenAddress { host: String, ip: IpAddr },
    #[error("could not resolve `{host}`: {detail}")]
    Resolve { host: String, detail: String },
    #[error("could not build HTTP client: {0}")]
    Client(String),
}

impl OutboundError {
    /// Whether this is the guard saying no, as opposed to something going wrong. A refusal
    /// is final; a resolution failure may be transient.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            OutboundError::Resolve { .. } | OutboundError::Client(_)
        )
    }
}

/// Checks what can be checked before connecting: the scheme, and the address when the host
/// is an IP literal. Hostnames are checked after resolution by [`GuardedResolver`], since
/// IP literals never reach a resolver.
///
/// The `url` crate has already normalised odd IPv4 spellings (`http://2130706433/`,
/// `http://0x7f.1/`) into `Host::Ipv4`, so they are caught here too.
pub fn check_url(url: &Url, policy: &OutboundPolicy) -> Result<(), OutboundError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(OutboundError::UnsupportedScheme(other.to_string())),
    }
    let ip = match url.host() {
        None => return Err(OutboundError::MissingHost),
        Some(Host::Domain("")) => return Err(OutboundError::MissingHost),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if !policy.allow_private_networks && is_forbidden_ip(ip) {
        return Err(OutboundError::ForbiddenAddress {
            host: url.host_str().unwrap_or_default().to_string(),
            ip,
        });
    }
    Ok(())
}

/// Builds the client used for all webhook calls. Redirects are not followed (a redirect
/// could point anywhere, and each hop would need the same checks), and proxies from the
/// environment are ignored because a proxy would resolve the name for us, bypassing the
/// resolver check.
pub fn http_client(
    policy: &OutboundPolicy,
    timeout: Duration,
) -> Result<reqwest::Client, OutboundError> {
    guarded_builder(policy, timeout)
        .http1_only()
        .build()
        .map_err(|e| OutboundError::Client(e.to_string()))
}

/// The same guarded client speaking only HTTP/2, for APNs, which accepts nothing else.
/// With prior knowledge a plain-text server (a test peer) gets h2c, and TLS servers
/// negotiate h2 through ALPN.
pub fn http2_client(
    policy: &OutboundPolicy,
    timeout: Duration,
) -> Result<reqwest::Client, OutboundError> {
    guarded_builder(policy, timeout)
        .http2_prior_knowledge()
        .build()
        .map_err(|e| OutboundError::Client(e.to_string()))
}

fn guarded_builder(policy: &OutboundPolicy, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(*policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .user_agent("hark")
}

/// Finds an [`OutboundError`] anywhere in an error's source chain. The resolver's error
/// reaches us wrapped by hyper and reqwest.
pub fn find_outbound_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a OutboundError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<OutboundError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The messages of an error and all its sources, joined, because reqwest's own message
/// ("error sending request") hides the useful part.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
