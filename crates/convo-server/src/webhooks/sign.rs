//! The two signatures every delivery carries (CONTRACT §8), both keyed by the endpoint's one
//! `secret_key` (`whsec_` + base64 of 32 random bytes): NexHealth's `timestamp` and
//! `signature` headers, and Standard Webhooks' `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`. A receiver written for either checks its own pair and ignores the other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Standard Webhooks' prefix of a symmetric secret.
const PREFIX: &str = "whsec_";

/// A new endpoint secret: `whsec_` and the standard base64 of 32 random bytes. NexHealth-style
/// receivers key by the whole string's bytes, Standard Webhooks libraries by the decoded bytes
/// (the specification allows one secret for both schemes).
pub fn new_secret() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

/// The signing headers of one attempt, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// NexHealth's `timestamp`: the attempt's time, RFC 3339 UTC to the second.
    pub timestamp: String,
    /// NexHealth's `signature`.
    pub signature: String,
    /// `webhook-id`: `evt_<event id>`, the same on every attempt of an event.
    pub webhook_id: String,
    /// `webhook-timestamp`: Unix seconds of the attempt.
    pub webhook_timestamp: String,
    /// `webhook-signature`: `v1,` and the base64 HMAC.
    pub webhook_signature: String,
}

/// The secret is not `whsec_` followed by standard base64: not one this server made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the endpoint's secret is not a whsec_ secret")]
pub struct BadSecret;

/// Both signatures of `body` for an attempt at `unix_seconds` of event `event_id`.
pub fn sign(
    secret_key: &str,
    event_id: i64,
    unix_seconds: i64,
    body: &[u8],
) -> Result<Signed, BadSecret> {
    let timestamp = rfc3339_seconds(unix_seconds).ok_or(BadSecret)?;
    let webhook_id = format!("evt_{event_id}");
    let webhook_timestamp = unix_seconds.to_string();
    Ok(Signed {
        signature: nexhealth_signature(secret_key, &timestamp, body),
        webhook_signature: standard_signature(secret_key, &webhook_id, &webhook_timestamp, body)?,
        timestamp,
        webhook_id,
        webhook_timestamp,
    })
}

/// NexHealth's scheme: lowercase hex HMAC-SHA256 keyed by the UTF-8 bytes of `secret_key`, over
/// `timestamp + "." + base64(body)` (standard alphabet, padded), `timestamp` as sent.
pub fn nexhealth_signature(secret_key: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_key.as_bytes());
    hex(hmac::sign(&key, &nexhealth_text(timestamp, body)).as_ref())
}

/// What NexHealth's scheme signs: `timestamp + "." + base64(body)`.
fn nexhealth_text(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(timestamp.len() + 1 + body.len().div_ceil(3) * 4);
    text.extend_from_slice(timestamp.as_bytes());
    text.push(b'.');
    text.extend_from_slice(STANDARD.encode(body).as_bytes());
    text
}

/// Standard Webhooks v1: `v1,` and the base64 HMAC-SHA256 keyed by the decoded part of the
/// secret after `whsec_`, over `id + "." + timestamp + "." + body`.
pub fn standard_signature(
    secret_key: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<String, BadSecret> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &standard_key(secret_key)?);
    let tag = hmac::sign(&key, &standard_text(id, timestamp, body));
    Ok(format!("v1,{}", STANDARD.encode(tag.as_ref())))
}

/// What Standard Webhooks signs: `id + "." + timestamp + "." + body`.
fn standard_text(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(id.len() + timestamp.len() + 2 + body.len());
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        text.extend_from_slice(part);
    }
    text
}

/// The signing headers a receiver got, as text (absent: `None`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Received<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
}

/// Why a receiver refuses a delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the NexHealth signature does not match")]
    NexHealth,
    #[error("no webhook-signature matches")]
    Standard,
    #[error("webhook-timestamp is more than 5 minutes from now")]
    Stale,
    #[error(transparent)]
    Secret(#[from] BadSecret),
}

/// How far a Standard Webhooks timestamp may be from the receiver's clock (the libraries' 5 min).
const TOLERANCE_S: i64 = 5 * 60;

/// A receiver's check of both schemes, in constant time: what `convo webhooks listen` does, and
/// what a receiver written for either scheme does with its own pair. Several space-separated
/// `v1,` values pass when any one matches (key rotation).
pub fn verify(
    secret_key: &str,
    got: &Received<'_>,
    body: &[u8],
    now_s: i64,
) -> Result<(), Rejected> {
    let timestamp = got.timestamp.ok_or(Rejected::Missing("timestamp"))?;
    let signature = got.signature.ok_or(Rejected::Missing("signature"))?;
    let id = got.webhook_id.ok_or(Rejected::Missing("webhook-id"))?;
    let ts = got
        .webhook_timestamp
        .ok_or(Rejected::Missing("webhook-timestamp"))?;
    let signatures = got
        .webhook_signature
        .ok_or(Rejected::Missing("webhook-signature"))?;

    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_key.as_bytes());
    let tag = unhex(signature.trim()).ok_or(Rejected::NexHealth)?;
    hmac::verify(&key, &nexhealth_text(timestamp, body), &tag).map_err(|_| Rejected::NexHealth)?;

    let key = hmac::Key::new(hmac::HMAC_SHA256, &standard_key(secret_key)?);
    let signed = standard_text(id, ts, body);
    let matched = signatures.split(' ').any(|value| {
        value
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
    });
    if !matched {
        return Err(Rejected::Standard);
    }
    let sent: i64 = ts.parse().map_err(|_| Rejected::Stale)?;
    if (now_s - sent).abs() > TOLERANCE_S {
        return Err(Rejected::Stale);
    }
    Ok(())
}

fn standard_key(secret_key: &str) -> Result<Vec<u8>, BadSecret> {
    secret_key
        .strip_prefix(PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|raw| !raw.is_empty())
        .ok_or(BadSecret)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `2026-11-24T12:00:00Z` (a whole second prints no fraction).
fn rfc3339_seconds(unix_seconds: i64) -> Option<String> {
    Some(jiff::Timestamp::from_second(unix_seconds).ok()?.to_string())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONTRACT §8's vector (NexHealth's scheme, the docs' sample secret).
    #[test]
    fn nexhealth_vector() {
        let body = br#"{"resource_type":"Message","event_name":"message_created","event_time":"2026-11-24T12:00:00Z","subdomain":"demo","data":{"messages":[{"id":1}]},"delivery_errors":[]}"#;
        assert_eq!(
            nexhealth_signature("NArWk7gdI96Bdn", "2026-11-24T12:00:00Z", body),
            "89ec12ed7f7f23295af789eff89313608ac8960ecc729893a191c126ccb6ca58"
        );
    }

    /// The Standard Webhooks specification's own vector.
    #[test]
    fn standard_webhooks_vector() {
        let got = standard_signature(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553",
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            got.as_deref(),
            Ok("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
    }

    #[test]
    fn one_attempt_carries_both_schemes_over_the_same_instant() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = br#"{"id":1}"#;
        let s = sign(secret, 42, 1_795_521_600, body).expect("signed");
        assert_eq!(s.timestamp, "2026-11-24T12:00:00Z");
        assert_eq!(s.webhook_timestamp, "1795521600");
        assert_eq!(s.webhook_id, "evt_42");
        assert_eq!(s.signature, nexhealth_signature(secret, &s.timestamp, body));
        assert_eq!(
            Ok(s.webhook_signature),
            standard_signature(secret, "evt_42", "1795521600", body)
        );
    }

    #[test]
    fn a_flipped_byte_a_wrong_key_or_another_instant_change_the_signature() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let s = sign(secret, 7, 1_795_521_600, b"{\"a\":1}").expect("signed");
        let flipped = sign(secret, 7, 1_795_521_600, b"{\"a\":2}").expect("signed");
        let later = sign(secret, 7, 1_795_521_601, b"{\"a\":1}").expect("signed");
        let other = sign(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            7,
            1_795_521_600,
            b"{\"a\":1}",
        )
        .expect("signed");
        for changed in [&flipped, &later, &other] {
            assert_ne!(changed.signature, s.signature);
            assert_ne!(changed.webhook_signature, s.webhook_signature);
        }
    }

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        let a = new_secret().expect("random");
        let b = new_secret().expect("random");
        assert_ne!(a, b);
        let raw = STANDARD
            .decode(a.strip_prefix("whsec_").expect("prefix"))
            .expect("base64");
        assert_eq!(raw.len(), 32);
        assert!(standard_signature(&a, "evt_1", "1", b"x").is_ok());
    }

    #[test]
    fn a_secret_not_made_here_is_refused_for_the_standard_scheme() {
        for bad in ["NArWk7gdI96Bdn", "whsec_", "whsec_!!!", ""] {
            assert_eq!(
                standard_signature(bad, "evt_1", "1", b"x"),
                Err(BadSecret),
                "{bad}"
            );
        }
    }

    fn received(s: &Signed) -> Received<'_> {
        Received {
            timestamp: Some(&s.timestamp),
            signature: Some(&s.signature),
            webhook_id: Some(&s.webhook_id),
            webhook_timestamp: Some(&s.webhook_timestamp),
            webhook_signature: Some(&s.webhook_signature),
        }
    }

    #[test]
    fn a_receiver_accepts_what_was_signed_and_nothing_else() {
        let secret = new_secret().expect("random");
        let body = br#"{"event_name":"message_created"}"#;
        let now = 1_795_521_600;
        let s = sign(&secret, 9, now, body).expect("signed");
        assert_eq!(verify(&secret, &received(&s), body, now + 10), Ok(()));
        // Rotation: any one of several values may match.
        let rotated = format!("v1,AAAA {}", s.webhook_signature);
        let got = Received {
            webhook_signature: Some(&rotated),
            ..received(&s)
        };
        assert_eq!(verify(&secret, &got, body, now), Ok(()));
        assert_eq!(
            verify(&secret, &received(&s), b"{}", now),
            Err(Rejected::NexHealth)
        );
        let other = new_secret().expect("random");
        assert_eq!(
            verify(&other, &received(&s), body, now),
            Err(Rejected::NexHealth)
        );
        assert_eq!(
            verify(&secret, &received(&s), body, now + 301),
            Err(Rejected::Stale)
        );
        assert_eq!(
            verify(&secret, &received(&s), body, now - 301),
            Err(Rejected::Stale)
        );
        let partial = "v1,".to_string();
        let got = Received {
            webhook_signature: Some(&partial),
            ..received(&s)
        };
        assert_eq!(verify(&secret, &got, body, now), Err(Rejected::Standard));
        let got = Received {
            webhook_id: Some("evt_10"),
            ..received(&s)
        };
        assert_eq!(verify(&secret, &got, body, now), Err(Rejected::Standard));
        let got = Received {
            signature: None,
            ..received(&s)
        };
        assert_eq!(
            verify(&secret, &got, body, now),
            Err(Rejected::Missing("signature"))
        );
    }
}
