//! Twilio's webhook signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed by the account's
//! auth token, over the full URL Twilio requested followed by every POST parameter's name and
//! value, sorted by name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = String::from(url);
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(value);
    }
    text
}

fn key(auth_token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes())
}

/// The signature Twilio would send for this request.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let tag = hmac::sign(&key(auth_token), signed_text(url, params).as_bytes());
    STANDARD.encode(tag.as_ref())
}

/// Checks `given` in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let Ok(tag) = STANDARD.decode(given.trim()) else {
        return false;
    };
    hmac::verify(&key(auth_token), signed_text(url, params).as_bytes(), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Expected values were computed with the `twilio` Python package's RequestValidator
    // (twilio.request_validator.compute_signature), not with this code.
    const INBOUND: &[(&str, &str)] = &[
        ("From", "+12125550123"),
        ("To", "+12125550140"),
        ("Body", "Can I move my cleaning? 50% off & more"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "0"),
        ("AccountSid", "AC00000000000000000000000000000000"),
    ];

    #[test]
    fn twilios_published_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            "12345",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn right_token_wrong_token_wrong_url_reordered_params() {
        let token = "s3cr3t-auth-token";
        let url = "https://convo.example.org/sms/inbound";
        let good = "JTlcE9FGJKHwzDerMb7oZZQjxzo=";
        let params = pairs(INBOUND);
        assert!(verify(token, url, &params, good));
        assert!(!verify("another-token", url, &params, good));
        assert!(!verify(
            token,
            "https://convo.example.org/sms/inbound2",
            &params,
            good
        ));
        let mut reordered = params.clone();
        reordered.reverse();
        assert!(
            verify(token, url, &reordered, good),
            "order on the wire is irrelevant"
        );
        let mut tampered = params.clone();
        tampered[2].1.push('!');
        assert!(!verify(token, url, &tampered, good));
        assert!(!verify(token, url, &params, "not base64 at all"));
        assert!(!verify(token, url, &params, ""));
    }

    #[test]
    fn behind_a_proxy_the_public_url_is_what_twilio_signed() {
        let token = "s3cr3t-auth-token";
        let params = pairs(INBOUND);
        // Twilio signed the public URL; the server itself listens on loopback.
        let public = "https://convo.example.org/sms/inbound";
        let local = "http://127.0.0.1:8080/sms/inbound";
        assert!(verify(
            token,
            public,
            &params,
            "JTlcE9FGJKHwzDerMb7oZZQjxzo="
        ));
        assert!(!verify(
            token,
            local,
            &params,
            "JTlcE9FGJKHwzDerMb7oZZQjxzo="
        ));
        assert_eq!(
            signature(token, local, &params),
            "nUmSzn5/C45uafkAiAtPBb5Yuw8="
        );
    }

    #[test]
    fn status_callback() {
        let params = pairs(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "delivered"),
            ("AccountSid", "AC00000000000000000000000000000000"),
        ]);
        assert_eq!(
            signature(
                "s3cr3t-auth-token",
                "https://convo.example.org/sms/status",
                &params
            ),
            "NkauqT6z6SWQ2EVQvslgxaR41Z4="
        );
        // Our StatusCallback URL carries the delivery id; Twilio signs the query with it
        // (vector from the `twilio` package's RequestValidator).
        let with_query = "https://convo.example.org/sms/status?delivery=42";
        assert_eq!(
            signature("s3cr3t-auth-token", with_query, &params),
            "rWVSNTwTDrgjKHM98c8sImv43Vo="
        );
        assert!(!verify(
            "s3cr3t-auth-token",
            "https://convo.example.org/sms/status?delivery=43",
            &params,
            "rWVSNTwTDrgjKHM98c8sImv43Vo="
        ));
    }
}
