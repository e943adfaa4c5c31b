//! Bearer tokens: HS256 JWTs whose `sub` is the API key id (CONTRACT §2 and §7).

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Issues and verifies tokens. The secret never leaves this struct (and it has no `Debug`).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: i64,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    pub fn issue(&self, key_id: i64) -> Result<String, ApiError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| ApiError::Internal("system random source failed".into()))?;
        let claims = Claims {
            sub: key_id.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl),
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token: {e}")))
    }

    /// The key id of a valid, unexpired token signed with our secret.
    pub fn verify(&self, token: &str) -> Option<i64> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        data.claims.sub.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let tokens = Tokens::new(b"secret-one", 60);
        let t = tokens.issue(42).expect("issue");
        assert_eq!(tokens.verify(&t), Some(42));
        assert_eq!(Tokens::new(b"secret-two", 60).verify(&t), None);
        assert_eq!(tokens.verify("not.a.token"), None);
        assert_eq!(tokens.verify(""), None);
        // Flip one character of the signature.
        let mut forged = t.clone();
        let last = forged.pop().expect("non-empty");
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(tokens.verify(&forged), None);
    }

    #[test]
    fn expired_tokens_fail() {
        let expired = Tokens {
            ttl: -10,
            ..Tokens::new(b"s", 0)
        };
        let t = expired.issue(1).expect("issue");
        assert_eq!(Tokens::new(b"s", 60).verify(&t), None);
    }

    #[test]
    fn claims_have_the_contract_shape() {
        let tokens = Tokens::new(b"s", 3600);
        let t = tokens.issue(7).expect("issue");
        let mut v = Validation::new(Algorithm::HS256);
        v.insecure_disable_signature_validation();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b""), &v)
                .expect("decode");
        let c = data.claims;
        assert_eq!(c["sub"], "7");
        let (iat, exp) = (
            c["iat"].as_i64().expect("iat"),
            c["exp"].as_i64().expect("exp"),
        );
        assert_eq!(exp - iat, 3600);
        assert!(c["jti"].as_str().is_some_and(|j| j.len() == 32));
        assert_eq!(data.header.alg, Algorithm::HS256);
    }
}
