//! AWS Signature Version 4 for the two AWS APIs Hark calls (SES and SNS), written out
//! rather than pulling in an SDK for one header.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::ProviderRequest;

type HmacSha256 = Hmac<Sha256>;

/// Static credentials from the channel settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Present for temporary (STS) credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

/// `20150830T123600Z` for an instant.
pub fn amz_date(at: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Signs `request` in place: adds `x-amz-date`, the session token when there is one,
/// and `Authorization`. The `host` header is signed as reqwest will send it (with the port
/// only when it is not the scheme's default).
pub fn sign(
    request: &mut ProviderRequest,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    at: SystemTime,
) {
    let date = amz_date(at);
    let (_, body) = request.body.encode();
    let mut signed = vec![
        ("host".to_string(), host_header(&request.url)),
        ("x-amz-date".to_string(), date.clone()),
    ];
    if let Some(token) = credentials
        .session_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        signed.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    let authorization = authorization(
        request.method.as_str(),
        &request.url,
        &signed,
        &body,
        credentials,
        region,
        service,
        &date,
    );
    for (name, value) in signed.into_iter().skip(1) {
        request.headers.push((name, value));
    }
    request
        .headers
        .push(("Authorization".to_string(), authorization));
}

fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The `Authorization` header value for a request whose signed headers (names lower case)
/// are `headers`, at `amz_date` (`YYYYMMDDTHHMMSSZ`).
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    payload: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        canonical_path(url),
        canonical_query(url),
        hex::encode(Sha256::digest(payload)),
    );
    let day = amz_date.get(..8).unwrap_or_default();
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(&credentials.secret_access_key, day, region, service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The path as sent. The `url` crate has already percent-encoded it once, which is what
/// services other than S3 expect for the plain paths Hark calls.
fn canonical_path(url: &Url) -> String {
    let path = url.path();
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// Query pairs sorted by name then value, each encoded with AWS's unreserved set.
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (aws_encode(&k), aws_encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn aws_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's published SigV4 test suite.
    fn suite_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn suite_case(method: &str, url: &str) -> String {
        let url = Url::parse(url).expect("url");
        authorization(
            method,
            &url,
            &[
                ("Host".into(), "example.amazonaws.com".into()),
                ("X-Amz-Date".into(), "20150830T123600Z".into()),
            ],
            b"",
            &suite_credentials(),
            "us-east-1",
            "service",
            "20150830T123600Z",
        )
    }

    #[test]
    fn get_vanilla() {
        assert_eq!(
            suite_case("GET", "https://example.amazonaws.com/"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla() {
        assert!(
            suite_case("POST", "https://example.amazonaws.com/").ends_with(
                "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert!(suite_case(
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1"
        )
        .ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    }

    #[test]
    fn dates_are_compact_utc() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(at), "20150830T123600Z");
    }
}
