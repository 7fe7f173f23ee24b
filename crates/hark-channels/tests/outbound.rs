//! The SSRF guard: address classification, URL checks, and the resolver.

use std::net::IpAddr;

use hark_channels::outbound::{
    check_url, is_forbidden_ip, GuardedResolver, OutboundError, OutboundPolicy,
};
use reqwest::dns::{Name, Resolve};
use url::Url;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

#[test]
fn forbidden_addresses() {
    for addr in [
        "169.254.169.254",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::127.0.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "127.255.0.9",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
        "2002:7f00:1::1",     // 6to4 of 127.0.0.1
    ] {
        assert!(is_forbidden_ip(ip(addr)), "{addr} should be forbidden");
    }
}

#[test]
fn allowed_addresses() {
    for addr in [
        "93.184.216.34",
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1",
        "2a00:1450:4001::200e",
        "::ffff:93.184.216.34",
        "64:ff9b::808:808",
        "2002:5db8:d822::1",
    ] {
        assert!(!is_forbidden_ip(ip(addr)), "{addr} should be allowed");
    }
}

fn check(url: &str, allow_private_networks: bool) -> Result<(), OutboundError> {
    let url = Url::parse(url).expect("url");
    check_url(
        &url,
        &OutboundPolicy {
            allow_private_networks,
        },
    )
}

#[test]
fn url_crate_normalises_integer_hosts_and_they_are_refused() {
    let url = Url::parse("http://2130706433/x").expect("url");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert!(matches!(
        check("http://2130706433/x", false),
        Err(OutboundError::ForbiddenAddress { .. })
    ));
    assert!(check("http://0x7f.1/", false).is_err());
    assert!(check("http://017700000001/", false).is_err());
}

#[test]
fn check_url_refusals() {
    for url in [
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "https://10.0.0.1/hook",
        "http://[fe80::1]/",
    ] {
        assert!(
            matches!(
                check(url, false),
                Err(OutboundError::ForbiddenAddress { .. })
            ),
            "{url}"
        );
    }
    assert!(matches!(
        check("ftp://example.com/file", false),
        Err(OutboundError::UnsupportedScheme(s)) if s == "ftp"
    ));
    assert!(matches!(
        check("file:///etc/passwd", true),
        Err(OutboundError::UnsupportedScheme(_))
    ));
}

#[test]
fn check_url_allows_public_and_names() {
    assert!(check("https://93.184.216.34/hook", false).is_ok());
    assert!(check("https://hooks.example.com/x?y=1", false).is_ok());
    // Names are judged after resolution, by the resolver.
    assert!(check("http://localhost/", false).is_ok());
    assert!(check("http://127.0.0.1:8080/", true).is_ok());
}

#[tokio::test]
async fn resolver_refuses_names_resolving_to_loopback() {
    let resolver = GuardedResolver::new(OutboundPolicy::default());
    let err = resolver.lookup("localhost").await.expect_err("refused");
    assert!(
        matches!(err, OutboundError::ForbiddenAddress { .. }),
        "{err}"
    );
    assert!(err.is_refusal());
    let name: Name = "localhost".parse().expect("name");
    assert!(resolver.resolve(name).await.is_err());

    let allowing = GuardedResolver::new(OutboundPolicy {
        allow_private_networks: true,
    });
    let addrs = allowing.lookup("localhost").await.expect("allowed");
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
}
