//! A practice group's worth of conversations, generated deterministically from a seed, as import
//! records. It feeds the benchmark (`convo generate`) and the tests that need realistic volume.
//!
//! One institution, four locations holding 40/30/20/10 % of the conversations, one patient per
//! conversation, 25 staff users, thread lengths log-normal (median 12, a long tail of threads with
//! hundreds of messages), over `days` days ending at `until`. Message ids follow global time order,
//! as they would in a database that assigned them as messages arrived.

use crate::import::{
    AttachmentRec, Conversation, Institution, Location, Message, Patient, Record, SenderRef, Ts,
    User,
};
use crate::model::SenderKind;
use crate::time::Millis;

pub const SUBDOMAIN: &str = "summit-dental";
pub const STAFF: i64 = 25;
const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;
const LONGEST_THREAD: f64 = 1_500.0;

/// (id, name, zone, phone, share of conversations in percent)
pub const LOCATIONS: [(i64, &str, &str, &str, u32); 4] = [
    (1, "Midtown", "America/New_York", "+12125550140", 40),
    (2, "Lakeview", "America/Chicago", "+13125550140", 30),
    (3, "Cherry Creek", "America/Denver", "+13035550140", 20),
    (4, "Scottsdale", "America/Phoenix", "+14805550140", 10),
];

/// splitmix64: tiny, fast, and plenty for plausible fake data.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// An independent stream for item `n` of this seed, so any item can be regenerated alone.
    fn stream(seed: u64, domain: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ domain.wrapping_mul(0xA24B_AED4_963E_E407));
        r.0 ^= r
            .next_u64()
            .wrapping_add(n.wrapping_mul(0x9FB2_1C65_1E98_DF25));
        r
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub conversations: u32,
    pub seed: u64,
    /// The newest message is before this instant.
    pub until: Millis,
    pub days: u32,
}

/// Every message's place in time, sorted: the plan is computed first so that ids can follow
/// global time order while each message's content is generated on the fly.
pub struct Plan {
    spec: Spec,
    /// Per conversation (index = id − 1): its location and when it started.
    conversations: Vec<(i64, i64)>,
    /// (created_at, conversation index), in global time order; message id = position + 1.
    messages: Vec<(i64, u32)>,
}

/// Names and patient lines, shared with the demo practice.
pub const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Diego", "Emma", "Farah", "Grace", "Hiro", "Isla", "Jamal", "Kira",
    "Liam", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Aiden", "Bianca", "Carlos", "Deepa", "Elena", "Felix",
];
pub const MIDDLE: &[&str] = &["Marie", "James", "Lee", "Ann", "Jo", "Ray", "Kai", "Rose"];
pub const LAST: &[&str] = &[
    "Diaz", "Nguyen", "Smith", "Okafor", "Kowalski", "Haddad", "Johnson", "Tanaka", "Rossi",
    "Martin", "Garcia", "Cohen", "Patel", "Brown", "Silva", "Murphy", "Larsen", "Ivanova",
    "Mensah", "Dubois", "Kim", "O'Brien", "Schmidt", "Alvarez",
];
const REMINDERS: &[&str] = &[
    "Hi {name}, this is a reminder of your appointment at Summit Dental {location} tomorrow at 9:30am. Reply C to confirm or call us to reschedule.",
    "Hi {name}, it's time for your six-month cleaning at Summit Dental {location}. Reply to this message and we'll find a time.",
    "{name}, your appointment at Summit Dental {location} is confirmed. Please arrive 10 minutes early.",
];
const STAFF_LINES: &[&str] = &[
    "Hi {name}, we have an opening tomorrow at 10am if you'd like to come in earlier.",
    "Thanks {name}! We've updated your insurance on file.",
    "Hi {name}, your crown is ready. Please call us to schedule the fitting.",
    "Please remember to bring your new insurance card to your visit.",
    "The doctor reviewed your x-rays and everything looks great.",
    "We received your forms, thank you!",
    "Your balance of $45.00 is due. You can pay online or at your next visit.",
    "No problem, we've moved you to Thursday at 2pm.",
];
pub const PATIENT_LINES: &[&str] = &[
    "Can I move my cleaning to next week?",
    "Thank you!",
    "Is parking available near the office?",
    "My tooth has been sensitive since the filling, is that normal?",
    "Running 10 minutes late, sorry!",
    "Do you take Delta Dental?",
    "Sounds good, see you then.",
    "Could you send me the receipt for my last visit?",
    "C",
    "Yes, confirmed.",
];

/// A patient's name, derivable from the seed and id alone (message bodies use it too).
fn patient_name(seed: u64, id: i64) -> (&'static str, Option<&'static str>, &'static str) {
    let mut r = Rng::stream(seed, 1, id as u64);
    let first = r.pick(FIRST);
    let middle = r.chance(30).then(|| r.pick(MIDDLE));
    (first, middle, r.pick(LAST))
}

impl Plan {
    pub fn new(spec: Spec) -> Plan {
        let mut rng = Rng(spec.seed);
        let n = spec.conversations as usize;
        let span = i64::from(spec.days.max(1)) * DAY;
        let start = spec.until.0 - span;
        // Starts sorted so that conversation ids, like message ids, follow time.
        let mut starts: Vec<i64> = (0..n)
            .map(|_| start + rng.below((span - MINUTE) as u64) as i64)
            .collect();
        starts.sort_unstable();
        let mut locations: Vec<i64> = Vec::with_capacity(n);
        for (i, &(id, .., share)) in LOCATIONS.iter().enumerate() {
            let count = if i + 1 == LOCATIONS.len() {
                n - locations.len()
            } else {
                n * share as usize / 100
            };
            locations.extend(std::iter::repeat_n(id, count));
        }
        for i in (1..n).rev() {
            locations.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut messages = Vec::with_capacity(n * 20);
        for (c, &begin) in starts.iter().enumerate() {
            let length = (12f64.ln() + rng.normal()).exp().round();
            let length = length.clamp(1.0, LONGEST_THREAD) as u64;
            messages.push((begin, c as u32));
            let room = (spec.until.0 - begin).max(1) as u64;
            for _ in 1..length {
                messages.push((begin + rng.below(room) as i64, c as u32));
            }
        }
        messages.sort_unstable();
        let conversations = locations.into_iter().zip(starts).collect();
        Plan {
            spec,
            conversations,
            messages,
        }
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// How many records `emit` will produce.
    pub fn record_count(&self) -> usize {
        1 + LOCATIONS.len() + STAFF as usize + 2 * self.conversations.len() + self.messages.len()
    }

    /// Produces every record in an order the import accepts.
    pub fn emit<E>(&self, mut out: impl FnMut(Record) -> Result<(), E>) -> Result<(), E> {
        let seed = self.spec.seed;
        out(Record::Institution(Institution {
            id: 1,
            subdomain: SUBDOMAIN.into(),
            name: "Summit Dental Group".into(),
        }))?;
        for (id, name, tz, phone, _) in LOCATIONS {
            out(Record::Location(Location {
                id,
                institution_id: 1,
                name: name.into(),
                tz: tz.into(),
                phone_number: Some(phone.into()),
            }))?;
        }
        for id in 1..=STAFF {
            let mut r = Rng::stream(seed, 2, id as u64);
            let (first, last) = (r.pick(FIRST), r.pick(LAST));
            out(Record::User(User {
                id,
                institution_id: 1,
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                email: Some(format!(
                    "{}.{id}@summitdental.example",
                    first.to_lowercase()
                )),
                image: (id % 3 == 0).then(|| format!("https://images.example.com/staff/{id}.png")),
            }))?;
        }
        for (i, &(_, began)) in self.conversations.iter().enumerate() {
            out(Record::Patient(self.patient(i as i64 + 1, began)))?;
        }
        for (i, &(location_id, began)) in self.conversations.iter().enumerate() {
            let id = i as i64 + 1;
            out(Record::Conversation(Conversation {
                id,
                location_id,
                patient_id: id,
                created_at: Ts(Millis(began)),
            }))?;
        }
        let mut last_sender = vec![None::<SenderKind>; self.conversations.len()];
        for (i, &(at, conv)) in self.messages.iter().enumerate() {
            let previous = &mut last_sender[conv as usize];
            let message = self.message(i as i64 + 1, at, i64::from(conv) + 1, *previous);
            *previous = Some(message.sender.kind);
            out(Record::Message(message))?;
        }
        Ok(())
    }

    fn patient(&self, id: i64, first_contact: i64) -> Patient {
        let seed = self.spec.seed;
        let mut r = Rng::stream(seed, 3, id as u64);
        let (first, middle, last) = patient_name(seed, id);
        let created = first_contact - r.below(3 * 365) as i64 * DAY;
        let updated = (first_contact + r.below(30) as i64 * DAY).min(self.spec.until.0);
        Patient {
            id,
            institution_id: 1,
            first_name: Some(first.into()),
            middle_name: middle.map(Into::into),
            last_name: Some(last.into()),
            email: Some(format!(
                "{}.{}{id}@mail.example",
                first.to_lowercase(),
                last.to_lowercase().replace('\'', "")
            )),
            foreign_id: Some((100_000 + id).to_string()),
            foreign_id_type: Some("msg-opendental-DataSource-35".into()),
            bio: Some(format!(
                r#"{{"cell_phone_number":"+1{}555{:04}"}}"#,
                200 + r.below(700),
                id % 10_000
            )),
            inactive: r.chance(2),
            guarantor_id: None,
            unsubscribe_sms: r.chance(1),
            last_sync_time: Some(Ts(Millis(updated))),
            created_at: Some(Ts(Millis(created))),
            updated_at: Some(Ts(Millis(updated))),
        }
    }

    fn message(&self, id: i64, at: i64, conv: i64, previous: Option<SenderKind>) -> Message {
        let seed = self.spec.seed;
        let mut r = Rng::stream(seed, 4, id as u64);
        let (first, ..) = patient_name(seed, conv);
        let location = self.conversations[(conv - 1) as usize].0;
        let location_name = LOCATIONS[(location - 1) as usize].1;
        let roll = r.below(100);
        let kind = match previous {
            None if roll < 40 => SenderKind::System,
            Some(SenderKind::System) if roll < 70 => SenderKind::Patient,
            _ if roll < 45 => SenderKind::Patient,
            _ if roll < 88 => SenderKind::User,
            _ => SenderKind::System,
        };
        let (sender_id, text) = match kind {
            SenderKind::System => (None, r.pick(REMINDERS)),
            SenderKind::User => (Some(1 + r.below(STAFF as u64) as i64), r.pick(STAFF_LINES)),
            SenderKind::Patient => (Some(conv), r.pick(PATIENT_LINES)),
        };
        let body = text
            .replace("{name}", first)
            .replace("{location}", location_name);
        // Staff see most of what patients write, some time after it arrives.
        let mut seen_by = Vec::new();
        if kind == SenderKind::Patient && r.chance(80) {
            seen_by.push(1 + r.below(STAFF as u64) as i64);
            if r.chance(15) {
                let other = 1 + r.below(STAFF as u64) as i64;
                if other != seen_by[0] {
                    seen_by.push(other);
                }
            }
        }
        let updated = if seen_by.is_empty() {
            at
        } else {
            (at + (1 + r.below(240)) as i64 * MINUTE).min(self.spec.until.0 - 1)
        };
        let attachment = r.chance(3).then(|| {
            let (name, kind, size) = match kind {
                SenderKind::Patient => ("photo.jpg", "image/jpeg", 200_000 + r.below(3_000_000)),
                _ => ("post-op-instructions.pdf", "application/pdf", 80_000),
            };
            AttachmentRec {
                file_name: Some(name.into()),
                content_type: Some(kind.into()),
                file_size: Some(size as i64),
                url: Some(format!("https://files.example.com/m/{id}/{name}")),
                updated_at: Some(Ts(Millis(at))),
            }
        });
        Message {
            id,
            conversation_id: conv,
            body,
            created_at: Ts(Millis(at)),
            updated_at: Some(Ts(Millis(updated.max(at)))),
            sender: SenderRef {
                kind,
                id: sender_id,
            },
            seen_by,
            attachment,
            sms_msg_id: None,
            is_custom_reminder_response: kind == SenderKind::Patient
                && previous == Some(SenderKind::System),
        }
    }
}

#[cfg(test)]
mod tests;
