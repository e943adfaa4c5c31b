//! The demo practice: two locations in different zones, a few hundred patients and thousands of
//! messages over the last four months, generated deterministically and loaded through the same
//! import path as a file.

use crate::CliError;
use crate::cli::TokenArgs;
use convo_core::Millis;
use convo_core::SenderKind;
use convo_core::dataset::{FIRST, LAST, MIDDLE, PATIENT_LINES, Rng};
use convo_core::import::{
    AttachmentRec, Conversation, Institution, Location, Message, Patient, Record, SenderRef, Ts,
    User,
};
use convo_core::store::import_records;
use convo_core::store::prelude::*;
use convo_server::Tokens;
use std::sync::Arc;

pub const SUBDOMAIN: &str = "bright-smiles";
const PATIENTS: i64 = 320;
const DAY: i64 = 86_400_000;

const CITIES: &[(&str, &str, &str)] = &[
    ("New York", "NY", "10001"),
    ("Brooklyn", "NY", "11201"),
    ("Hoboken", "NJ", "07030"),
    ("Los Angeles", "CA", "90012"),
    ("Pasadena", "CA", "91101"),
];
const STAFF_LINES: &[&str] = &[
    "Hi {name}, this is Bright Smiles Dental. We have an opening tomorrow at 10am if you'd like to come in earlier.",
    "Thanks {name}! We've updated your insurance on file.",
    "Hi {name}, your crown is ready. Please call us to schedule the fitting.",
    "Please remember to bring your new insurance card to your visit.",
    "Dr. Lee reviewed your x-rays and everything looks great.",
    "We received your forms, thank you!",
    "Your balance of $45.00 is due. You can pay online or at your next visit.",
];

struct Builder {
    rng: Rng,
    records: Vec<Record>,
    messages: Vec<Message>,
}

impl Builder {
    fn message(
        &mut self,
        conv: i64,
        at: i64,
        sender: (SenderKind, Option<i64>),
        body: String,
    ) -> usize {
        self.messages.push(Message {
            id: 0,
            conversation_id: conv,
            body,
            created_at: Ts(Millis(at)),
            updated_at: None,
            sender: SenderRef {
                kind: sender.0,
                id: sender.1,
            },
            seen_by: Vec::new(),
            attachment: None,
            sms_msg_id: None,
            is_custom_reminder_response: false,
        });
        self.messages.len() - 1
    }

    /// One of the five front-desk staff.
    fn staff(&mut self) -> i64 {
        1 + i64::try_from(self.rng.below(5)).unwrap_or(0)
    }

    /// A stock staff line for the patient called `first`.
    fn staff_line(&mut self, first: &str) -> String {
        STAFF_LINES[self.rng.below(STAFF_LINES.len() as u64) as usize].replace("{name}", first)
    }
}

/// Every record of the demo practice, in an order the import accepts.
pub fn records(now: Millis) -> Vec<Record> {
    let mut b = Builder {
        rng: Rng(0xC0FFEE),
        records: Vec::new(),
        messages: Vec::new(),
    };
    b.records.push(Record::Institution(Institution {
        id: 1,
        subdomain: SUBDOMAIN.into(),
        name: "Bright Smiles Dental".into(),
    }));
    for (id, name, tz, phone) in [
        (1, "Downtown Manhattan", "America/New_York", "+12125550100"),
        (2, "Pasadena", "America/Los_Angeles", "+16265550100"),
    ] {
        b.records.push(Record::Location(Location {
            id,
            institution_id: 1,
            name: name.into(),
            tz: tz.into(),
            phone_number: Some(phone.into()),
        }));
    }
    let staff = [
        (
            1,
            "Sam",
            "Lee",
            Some("https://images.example.com/staff/sam-lee.png"),
        ),
        (2, "Dana", "Okafor", None),
        (
            3,
            "Priya",
            "Raman",
            Some("https://images.example.com/staff/priya-raman.png"),
        ),
        (4, "Luis", "Ortega", None),
        (5, "Mei", "Chen", None),
    ];
    for (id, first, last, image) in staff {
        b.records.push(Record::User(User {
            id,
            institution_id: 1,
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            email: Some(format!("{}@brightsmiles.example", first.to_lowercase())),
            image: image.map(str::to_string),
        }));
    }
    let start = now.0 - 120 * DAY;
    let mut conv_id = 0;
    for id in 1..=PATIENTS {
        let first = b.rng.pick(FIRST);
        let last = b.rng.pick(LAST);
        let middle = b.rng.chance(20).then(|| b.rng.pick(MIDDLE).to_string());
        // Every fifth patient shares a family phone with the patient before, its guarantor.
        let family = id % 5 == 0;
        let phone_owner = if family { id - 1 } else { id };
        let local = format!("516555{:04}", phone_owner);
        let city = CITIES[b.rng.below(CITIES.len() as u64) as usize];
        let created = start - i64::try_from(b.rng.below(700)).unwrap_or(0) * DAY;
        let bio = format!(
            r#"{{"phone_number":"{local}","cell_phone_number":"+1{local}","date_of_birth":"{}-{:02}-{:02}","gender":"{}","city":"{}","state":"{}","zip_code":"{}","new_patient":{},"non_patient":false}}"#,
            1950 + b.rng.below(60),
            1 + b.rng.below(12),
            1 + b.rng.below(28),
            if b.rng.chance(52) { "Female" } else { "Male" },
            city.0,
            city.1,
            city.2,
            b.rng.chance(10),
        );
        let opted_out = id == 7;
        b.records.push(Record::Patient(Patient {
            id,
            institution_id: 1,
            first_name: Some(first.into()),
            middle_name: middle,
            last_name: Some(last.into()),
            email: b.rng.chance(80).then(|| {
                format!(
                    "{}.{}{id}@mail.example",
                    first.to_lowercase(),
                    last.to_lowercase()
                )
            }),
            foreign_id: Some(format!("{}", 100_000 + id)),
            foreign_id_type: Some("msg-opendental-DataSource-35".into()),
            bio: Some(bio),
            inactive: b.rng.chance(3),
            guarantor_id: family.then_some(id - 1),
            unsubscribe_sms: opted_out,
            last_sync_time: Some(Ts(Millis(
                now.0 - i64::try_from(b.rng.below(DAY as u64)).unwrap_or(0),
            ))),
            created_at: Some(Ts(Millis(created))),
            updated_at: Some(Ts(Millis(created + DAY))),
        }));
        // Most patients talk to one location, some to both, a few to none yet.
        let locations: &[i64] = match b.rng.below(20) {
            0 => &[],
            1..=3 => &[1, 2],
            n if n % 2 == 0 => &[1],
            _ => &[2],
        };
        for &loc in locations {
            conv_id += 1;
            let opened = start + i64::try_from(b.rng.below(100)).unwrap_or(0) * DAY;
            b.records.push(Record::Conversation(Conversation {
                id: conv_id,
                location_id: loc,
                patient_id: id,
                created_at: Ts(Millis(opened)),
            }));
            thread(&mut b, conv_id, id, first, opened, now.0, opted_out);
        }
    }
    // Message ids follow time, as a live system's would.
    // Nothing in the future: follow-ups and reads that would land after `now` did not happen yet.
    let mut messages: Vec<Message> = std::mem::take(&mut b.messages)
        .into_iter()
        .filter(|m| m.created_at.0 < now)
        .map(|mut m| {
            if m.updated_at.is_some_and(|u| u.0 >= now) {
                m.updated_at = None;
                m.seen_by.clear();
            }
            m
        })
        .collect();
    messages.sort_by_key(|m| (m.created_at.0, m.conversation_id));
    for (i, mut m) in messages.into_iter().enumerate() {
        m.id = i64::try_from(i).unwrap_or(0) + 1;
        b.records.push(Record::Message(m));
    }
    b.records
}

/// One conversation's messages: reminders and replies, staff notes, patient questions.
fn thread(
    b: &mut Builder,
    conv: i64,
    patient: i64,
    first: &str,
    opened: i64,
    now: i64,
    opted_out: bool,
) {
    let mut at = opened;
    let exchanges = 2 + b.rng.below(14);
    for _ in 0..exchanges {
        at += i64::try_from(b.rng.below(12 * DAY as u64)).unwrap_or(0) + 60_000;
        if at > now - 3_600_000 {
            break;
        }
        match b.rng.below(3) {
            0 => {
                let body = format!(
                    "Hi {first}, this is a reminder of your appointment at Bright Smiles Dental in 2 days. Reply C to confirm or call us to reschedule."
                );
                b.message(conv, at, (SenderKind::System, None), body);
                if b.rng.chance(70) {
                    at += i64::try_from(b.rng.below(3_600_000)).unwrap_or(0) + 30_000;
                    let reply = if b.rng.chance(80) {
                        "C"
                    } else {
                        "Can we do Thursday instead?"
                    };
                    let i = b.message(conv, at, (SenderKind::Patient, Some(patient)), reply.into());
                    b.messages[i].is_custom_reminder_response = true;
                    seen(b, i, at);
                }
            }
            1 => {
                let body = PATIENT_LINES[b.rng.below(PATIENT_LINES.len() as u64) as usize];
                let i = b.message(conv, at, (SenderKind::Patient, Some(patient)), body.into());
                if b.rng.chance(15) {
                    b.messages[i].attachment = Some(AttachmentRec {
                        file_name: Some("insurance-card.jpg".into()),
                        content_type: Some("image/jpeg".into()),
                        file_size: Some(i64::try_from(80_000 + b.rng.below(400_000)).unwrap_or(0)),
                        url: Some(format!("https://files.example.com/mms/{conv}-{at}.jpg")),
                        updated_at: None,
                    });
                }
                seen(b, i, at);
                let staff = b.staff();
                at += i64::try_from(b.rng.below(4 * 3_600_000)).unwrap_or(0) + 120_000;
                let line = b.staff_line(first);
                b.message(conv, at, (SenderKind::User, Some(staff)), line);
            }
            _ => {
                let staff = b.staff();
                let line = b.staff_line(first);
                b.message(conv, at, (SenderKind::User, Some(staff)), line);
            }
        }
    }
    if opted_out && at < now - 3_600_000 {
        at += 3_600_000;
        let i = b.message(
            conv,
            at.min(now - 60_000),
            (SenderKind::Patient, Some(patient)),
            "STOP".into(),
        );
        seen(b, i, at);
        b.message(
            conv,
            at.min(now - 60_000) + 1000,
            (SenderKind::System, None),
            "You have been unsubscribed from Bright Smiles Dental messages. Reply START to resubscribe.".into(),
        );
    }
}

/// Staff usually read patient messages within hours; the last few stay unread.
fn seen(b: &mut Builder, i: usize, at: i64) {
    if b.rng.chance(80) {
        let who = 1 + i64::try_from(b.rng.below(5)).unwrap_or(0);
        let when = at + i64::try_from(b.rng.below(6 * 3_600_000)).unwrap_or(0);
        b.messages[i].seen_by.push(who);
        b.messages[i].updated_at = Some(Ts(Millis(when)));
    }
}

/// Loads the demo into an empty database (a filled one is left as it is), then prints a new
/// key and a curl line that works as pasted.
pub async fn seed_and_print(
    store: Arc<dyn Store>,
    listen: &str,
    tokens: &TokenArgs,
) -> Result<(), CliError> {
    if store.is_empty().await? {
        let summary = import_records(store.as_ref(), records(Millis::now())).await?;
        eprintln!(
            "demo practice loaded: {} patients, {} conversations, {} messages",
            summary.patients, summary.conversations, summary.messages
        );
    } else {
        eprintln!("the database already has data; the demo adds nothing");
    }
    let key = store
        .create_api_key(&[SUBDOMAIN.to_string()])
        .await
        .map_err(|e| CliError::Usage(format!("cannot create a demo key: {e}")))?;
    let secret = match &tokens.jwt_secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => store.jwt_secret().await?,
    };
    let token = Tokens::new(&secret, tokens.token_ttl)
        .issue(key.id)
        .map_err(|e| CliError::Usage(format!("cannot issue a demo token: {e}")))?;
    let base = format!("http://{listen}");
    println!("API key (shown once): {}", key.raw);
    println!();
    println!(
        "Conversations of the demo practice (the token is valid for {} s):",
        tokens.token_ttl
    );
    println!(
        "curl -s -H 'Authorization: Bearer {token}' '{base}/conversations?subdomain={SUBDOMAIN}&location_id=1&per_page=5&messages=3'"
    );
    println!();
    println!(
        "Message webhooks: register a receiver on this machine (`serve --demo` lets deliveries reach 127.0.0.1 over http; otherwise --webhook-allow-net 127.0.0.1/32 --webhook-allow-http), note the secret_key it answers with, then subscribe it to both events:"
    );
    println!(
        "curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' '{base}/webhook_endpoints' -d '{{\"target_url\":\"http://127.0.0.1:8089/\"}}'"
    );
    for event in ["message_created", "message_updated"] {
        println!(
            "curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' '{base}/webhook_endpoints/1/webhook_subscriptions?subdomain={SUBDOMAIN}' -d '{{\"resource_type\":\"Message\",\"event\":\"{event}\"}}'"
        );
    }
    println!(
        "(1 is the endpoint's id on a fresh demo database: use the id the first answer gave.) In another terminal, print every delivery with both signatures checked:"
    );
    println!("convo webhooks listen --port 8089 --secret SECRET_KEY");
    println!();
    println!("A staff message to patient 1 (queued for the SMS provider, listed first at once):");
    println!(
        "curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' '{base}/messages?subdomain={SUBDOMAIN}&location_id=1' -d '{{\"message\":{{\"patient_id\":1,\"user_id\":1,\"body\":\"Hi! We have an opening tomorrow at 10am.\"}}}}'"
    );
    println!();
    println!(
        "Patient 1 replies, signed as Twilio would (the server must run with CONVO_TWILIO_AUTH_TOKEN set; use the same value):"
    );
    println!(
        "convo sms inbound --from +15165550001 --to +12125550100 --body 'Yes please!' --url {base}"
    );
    println!();
    println!("A fresh token later:");
    println!(
        "curl -s -X POST -H 'Authorization: {}' '{base}/authenticates'",
        key.raw
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_rich() {
        let now = Millis(1_750_000_000_000);
        let a = records(now);
        assert_eq!(a, records(now));
        let messages: Vec<&Message> = a
            .iter()
            .filter_map(|r| {
                if let Record::Message(m) = r {
                    Some(m)
                } else {
                    None
                }
            })
            .collect();
        assert!(messages.len() > 2000, "only {} messages", messages.len());
        assert!(messages.iter().any(|m| m.attachment.is_some()));
        assert!(messages.iter().any(|m| m.is_custom_reminder_response));
        assert!(messages.iter().any(|m| m.sender.kind == SenderKind::System));
        assert!(
            messages
                .windows(2)
                .all(|w| w[0].created_at.0 <= w[1].created_at.0)
        );
        assert!(messages.iter().all(|m| m.created_at.0 < now));
        assert!(
            messages
                .iter()
                .all(|m| m.updated_at.is_none_or(|u| u.0 < now))
        );
        assert!(
            a.iter()
                .any(|r| matches!(r, Record::Patient(p) if p.unsubscribe_sms))
        );
    }
}
