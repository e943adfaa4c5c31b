//! The signer checked by code that is not ours (issue 15): every delivery's two signatures
//! verified by Python — NexHealth's scheme with the standard library, as a NexHealth receiver
//! does, and Standard Webhooks' with the specification's own package (`standardwebhooks` from
//! PyPI, which `scripts/test` installs). Missing Python or the package fails the test.

#[path = "webhooks/python.rs"]
mod python;

use convo_core::outbox::DeliveryStatus;
use convo_core::tz::Zone;
use convo_core::webhook::WebhookEvent;
use convo_core::{Message, Millis, Sender, SenderKind};
use convo_server::webhooks::payload::{self, Event};
use convo_server::webhooks::sign;

fn verify(secret: &str, s: &sign::Signed, body: &[u8]) -> Result<(), String> {
    python::verify_in_python(
        secret,
        [
            &s.timestamp,
            &s.signature,
            &s.webhook_id,
            &s.webhook_timestamp,
            &s.webhook_signature,
        ],
        body,
    )
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
        verify(&secret, &signed, &body).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        // And the check can fail: a changed byte is refused by both.
        let mut tampered = body.clone();
        if let Some(last) = tampered.iter_mut().rev().find(|b| **b == b'}') {
            *last = b' ';
        }
        assert!(verify(&secret, &signed, &tampered).is_err());
    }
}
