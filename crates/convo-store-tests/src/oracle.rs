//! What a database holds after a series of imports, modelled in memory from the records
//! themselves: the list's order, counts and each thread's newest messages, as CONTRACT §3 and
//! §5 define them. The cases compare every engine's answers with this, so an engine can never
//! be checked against its own SQL.

use convo_core::import::Record;
use std::collections::HashMap;

#[derive(Clone, Debug)]
struct Thread {
    location_id: i64,
    created_at: i64,
}

#[derive(Clone, Debug)]
pub struct MessageFacts {
    pub conversation_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub seen_by: Vec<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct Oracle {
    conversations: HashMap<i64, Thread>,
    messages: HashMap<i64, MessageFacts>,
    /// Staff users by institution, and locations by id (their institution).
    users: HashMap<i64, i64>,
    locations: HashMap<i64, i64>,
}

impl Oracle {
    pub fn from_records(records: &[Record]) -> Self {
        let mut o = Oracle::default();
        o.apply(records);
        o
    }

    /// Applies records as an import does: each upserts by id, later lines win.
    pub fn apply(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::Location(l) => {
                    self.locations.insert(l.id, l.institution_id);
                }
                Record::User(u) => {
                    self.users.insert(u.id, u.institution_id);
                }
                Record::Conversation(c) => {
                    self.conversations.insert(
                        c.id,
                        Thread {
                            location_id: c.location_id,
                            created_at: c.created_at.0.0,
                        },
                    );
                }
                Record::Message(m) => {
                    let created_at = m.created_at.0.0;
                    self.messages.insert(
                        m.id,
                        MessageFacts {
                            conversation_id: m.conversation_id,
                            created_at,
                            updated_at: m.updated_at.map_or(created_at, |t| t.0.0),
                            seen_by: m.seen_by.clone(),
                        },
                    );
                }
                Record::Institution(_) | Record::Patient(_) => {}
            }
        }
    }

    /// The list's order for a location: `updated_at` newest first, then id, optionally only
    /// `updated_at >= since`.
    pub fn order(&self, location_id: i64, since: Option<i64>) -> Vec<i64> {
        let mut newest: HashMap<i64, i64> = HashMap::new();
        for m in self.messages.values() {
            let e = newest.entry(m.conversation_id).or_insert(i64::MIN);
            *e = (*e).max(m.updated_at);
        }
        let mut rows: Vec<(i64, i64)> = self
            .conversations
            .iter()
            .filter(|(_, t)| t.location_id == location_id)
            .map(|(&id, t)| {
                let at = t
                    .created_at
                    .max(newest.get(&id).copied().unwrap_or(i64::MIN));
                (at, id)
            })
            .filter(|&(at, _)| since.is_none_or(|s| at >= s))
            .collect();
        rows.sort_unstable_by(|a, b| b.cmp(a));
        rows.into_iter().map(|(_, id)| id).collect()
    }

    /// The newest `limit` messages of a conversation (created_at, then id, newest first),
    /// within the list's message filters.
    pub fn thread(
        &self,
        conversation_id: i64,
        limit: usize,
        created_since: Option<i64>,
        updated_since: Option<i64>,
    ) -> Vec<i64> {
        let mut rows: Vec<(i64, i64)> = self
            .messages
            .iter()
            .filter(|(_, m)| m.conversation_id == conversation_id)
            .filter(|(_, m)| created_since.is_none_or(|s| m.created_at >= s))
            .filter(|(_, m)| updated_since.is_none_or(|s| m.updated_at >= s))
            .map(|(&id, m)| (m.created_at, id))
            .collect();
        rows.sort_unstable_by(|a, b| b.cmp(a));
        rows.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// A message of the conversation and a staff user of its institution who has not seen it
    /// (marking it seen is then a write that moves the conversation).
    pub fn unseen(&self, conversation_id: i64) -> Option<(i64, i64)> {
        let institution = self
            .locations
            .get(&self.conversations.get(&conversation_id)?.location_id)?;
        let mut staff: Vec<i64> = self
            .users
            .iter()
            .filter(|(_, i)| *i == institution)
            .map(|(&id, _)| id)
            .collect();
        staff.sort_unstable();
        let mut messages: Vec<(&i64, &MessageFacts)> = self
            .messages
            .iter()
            .filter(|(_, m)| m.conversation_id == conversation_id)
            .collect();
        messages.sort_unstable_by_key(|(id, _)| **id);
        messages.into_iter().find_map(|(&id, m)| {
            let user = staff.iter().find(|u| !m.seen_by.contains(u))?;
            Some((id, *user))
        })
    }

    /// Every location id, in order.
    pub fn location_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.locations.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
