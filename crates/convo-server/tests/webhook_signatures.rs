//! The signer checked by code that is not ours (issue 15): every delivery's two signatures
//! verified by Python — NexHealth's scheme with the standard library, as a NexHealth receiver
//! does, and Standard Webhooks' with the specification's own package (`standardwebhooks` from
//! PyPI, which `scripts/test` installs). Missing Python or the package fails the test.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use convo_core::outbox::DeliveryStatus;
use convo_core::tz::Zone;
use convo_core::webhook::WebhookEvent;
use convo_core::{Message, Millis, Sender, SenderKind};
use convo_server::webhooks::payload::{self, Event};
use convo_server::webhooks::sign;
use std::io::Write;
use std::process::{Command, Stdio};

fn verify_in_python(secret: &str, s: &sign::Signed, body: &[u8]) -> Result<(), String> {
    let doc = serde_json::json!({
        "secret": secret,
        "headers": {
            "timestamp": s.timestamp,
            "signature": s.signature,
            "webhook-id": s.webhook_id,
            "webhook-timestamp": s.webhook_timestamp,
            "webhook-signature": s.webhook_signature,
        },
        "body_b64": STANDARD.encode(body),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(doc.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && said == "ok" {
        Ok(())
    } else {
        Err(format!("{said} {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn message(body: &str) -> Message {
    Message {
        id: 50001,
        conversation_id: 1000,
        body: body.into(),
        created_at: Millis(1_795_521_600_000),
        updated_at: Millis(1_795_521_600_000),
        seen_by: "[]".into(),
        sender: Sender {
            kind: SenderKind::User,
            id: Some(5),
            name: Some("Sam Lee".into()),
            image: None,
        },
        attachment: None,
        sms_msg_id: None,
        is_custom_reminder_response: false,
    }
}

#[test]
fn pythons_verifiers_accept_every_signed_delivery() {
    let zone = Zone::get("America/New_York").expect("zone");
    let now = Millis::now().0 / 1000;
    // Bodies that exercise escaping and non-ASCII text: the signature is over the exact bytes.
    for (i, text) in ["See you at 3", "Ça va? \"Oui\" — 😀\n\\done", ""]
        .iter()
        .enumerate()
    {
        let secret = sign::new_secret().expect("secret");
        let m = message(text);
        let event = Event {
            id: 40 + i64::try_from(i).expect("small"),
            name: WebhookEvent::MessageCreated,
            time: Millis(now * 1000),
            subdomain: "bright-smiles",
            institution_id: 1,
            message: &m,
            zone: &zone,
            location_id: 10,
            patient_id: 100,
            delivery: Some((DeliveryStatus::Queued, None)),
        };
        let body = payload::body(&event, &["HTTP 500".into()]);
        let signed = sign::sign(&secret, event.id, now, &body).expect("signed");
        verify_in_python(&secret, &signed, &body).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        // And the check can fail: a changed byte is refused by both.
        let mut tampered = body.clone();
        if let Some(last) = tampered.iter_mut().rev().find(|b| **b == b'}') {
            *last = b' ';
        }
        assert!(verify_in_python(&secret, &signed, &tampered).is_err());
    }
}
