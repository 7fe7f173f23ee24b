//! Message encryption for Web Push (RFC 8291 on top of RFC 8188 `aes128gcm`): one
//! record, keyed by ECDH between a fresh sender key and the subscription's key, mixed
//! with the subscription's auth secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size written in the header. Hark sends one record, so it only has to be
/// larger than the payload plus its padding delimiter and tag.
const RECORD_SIZE: u32 = 4096;
/// Largest plaintext that fits the one record (4096 − 16-byte tag − 1 delimiter).
pub const MAX_PLAINTEXT: usize = 4079;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("the subscription's p256dh key is not a P-256 public key")]
    BadPublicKey,
    #[error("the subscription's auth secret must be 16 bytes")]
    BadAuthSecret,
    #[error("the payload is {0} bytes; Web Push allows at most {MAX_PLAINTEXT}")]
    TooLarge(usize),
    #[error("encryption failed")]
    Encrypt,
}

fn expand(prk: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) -> Result<(), EceError> {
    prk.expand(info, out).map_err(|_| EceError::Encrypt)
}

/// Encrypts `plaintext` for a subscription (`ua_public`: 65-byte uncompressed point,
/// `auth_secret`: 16 bytes) with the sender key `as_secret` and `salt`. Both are fresh
/// random values in production and fixed in the RFC's example.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    as_secret: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge(plaintext.len()));
    }
    if auth_secret.len() != 16 {
        return Err(EceError::BadAuthSecret);
    }
    let ua_key = PublicKey::from_sec1_bytes(ua_public).map_err(|_| EceError::BadPublicKey)?;
    let ua_point = ua_key.to_encoded_point(false);
    let as_point = as_secret.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_key.as_affine());

    // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" 0x00 ua_public as_public)
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_point.as_bytes());
    key_info.extend_from_slice(as_point.as_bytes());
    let mut ikm = [0u8; 32];
    expand(
        &Hkdf::<Sha256>::new(Some(auth_secret), shared.raw_secret_bytes()),
        &key_info,
        &mut ikm,
    )?;

    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    expand(&prk, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    expand(&prk, b"Content-Encoding: nonce\0", &mut nonce)?;

    // The last (and only) record ends with the 0x02 delimiter and no padding.
    let mut record = plaintext.to_vec();
    record.push(2);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Encrypt)?;
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .map_err(|_| EceError::Encrypt)?;

    // Header: salt, record size, key id length, key id (the sender's public key).
    let as_bytes = as_point.as_bytes();
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_bytes.len() + ciphertext.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_bytes.len() as u8);
    body.extend_from_slice(as_bytes);
    body.extend_from_slice(&ciphertext);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    /// RFC 8291 section 5, "Push Message Encryption Example".
    #[test]
    fn rfc8291_example() {
        let as_secret = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
            .expect("key");
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("salt");
        let body = encrypt(
            b"When I grow up, I want to be a watermelon",
            &b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
            &b64("BTBZMqHH6r4Tts7J_aSIgg"),
            &as_secret,
            &salt,
        )
        .expect("encrypt");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let key = SecretKey::from_slice(&[7u8; 32]).expect("key");
        let ua = b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        assert_eq!(
            encrypt(b"x", &[4u8; 65], &[0u8; 16], &key, &[0u8; 16]),
            Err(EceError::BadPublicKey)
        );
        assert_eq!(
            encrypt(b"x", &ua, &[0u8; 3], &key, &[0u8; 16]),
            Err(EceError::BadAuthSecret)
        );
        assert_eq!(
            encrypt(&[0u8; 5000], &ua, &[0u8; 16], &key, &[0u8; 16]),
            Err(EceError::TooLarge(5000))
        );
    }
}
