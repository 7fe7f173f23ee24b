//! DNS resolution that refuses forbidden addresses, so the SSRF check is made on the
//! address actually connected to rather than on the hostname in the URL.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{is_forbidden_ip, OutboundError, OutboundPolicy};

/// A `reqwest` resolver that resolves with the system resolver (through tokio) and fails
/// the lookup if any address is forbidden.
///
/// Refusing when *any* address is forbidden, rather than filtering, closes the trick of
/// publishing one public and one private record and hoping the client falls back.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver {
    policy: OutboundPolicy,
}

impl GuardedResolver {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }

    /// Resolves `host` and applies the policy. Port 0 is filled in by the caller
    /// (`reqwest` replaces it with the URL's port).
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, OutboundError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| OutboundError::Resolve {
                host: host.to_string(),
                detail: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(OutboundError::Resolve {
                host: host.to_string(),
                detail: "no addresses".to_string(),
            });
        }
        if !self.policy.allow_private_networks {
            if let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
                return Err(OutboundError::ForbiddenAddress {
                    host: host.to_string(),
                    ip: bad.ip(),
                });
            }
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.lookup(name.as_str()).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
