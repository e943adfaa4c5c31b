//! Domain types as the store hands them out. The HTTP layer turns them into the contract's JSON.

use crate::time::Millis;

/// Full name: the non-empty parts joined by single spaces; `None` when every part is empty.
pub fn full_name(parts: &[Option<&str>]) -> Option<String> {
    let mut out = String::new();
    for part in parts.iter().flatten() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
    }
    (!out.is_empty()).then_some(out)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Patient {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub institution_id: i64,
    pub foreign_id: Option<String>,
    pub foreign_id_type: Option<String>,
    /// The bio object as compact JSON text, keys in the order they were written.
    pub bio: String,
    pub inactive: bool,
    pub last_sync_time: Option<Millis>,
    pub guarantor_id: Option<i64>,
    pub unsubscribe_sms: bool,
}

impl Patient {
    pub fn name(&self) -> Option<String> {
        full_name(&[
            self.first_name.as_deref(),
            self.middle_name.as_deref(),
            self.last_name.as_deref(),
        ])
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderKind {
    Patient,
    User,
    System,
}

impl SenderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderKind::Patient => "Patient",
            SenderKind::User => "User",
            SenderKind::System => "System",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Patient" => Some(SenderKind::Patient),
            "User" => Some(SenderKind::User),
            "System" => Some(SenderKind::System),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sender {
    pub kind: SenderKind,
    /// Patient id or staff user id; `None` for `System`.
    pub id: Option<i64>,
    pub name: Option<String>,
    pub image: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub url: Option<String>,
    pub updated_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub body: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Ids of the staff users who saw it, as a compact JSON array of strings, in seen order.
    pub seen_by: String,
    pub sender: Sender,
    pub attachment: Option<Attachment>,
    pub sms_msg_id: Option<i64>,
    pub is_custom_reminder_response: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub id: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub patient: Patient,
    /// Newest first, already filtered and capped.
    pub messages: Vec<Message>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    pub paging: Paging,
}

/// What the list says about the pages besides this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// Page-number paging: all matches across pages.
    Count(i64),
    /// Cursor paging.
    Cursors(crate::cursor::PageInfo),
}

impl ConversationPage {
    /// The total of page-number paging; `None` for a cursor page.
    pub fn count(&self) -> Option<i64> {
        match self.paging {
            Paging::Count(n) => Some(n),
            Paging::Cursors(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub subdomains: Vec<String>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// A freshly created key: the raw secret is shown once and never stored.
#[derive(Debug)]
pub struct NewApiKey {
    pub id: i64,
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::full_name;
    use proptest::prelude::*;

    #[test]
    fn joins_non_empty_parts() {
        assert_eq!(
            full_name(&[Some("Ana"), None, Some("Diaz")]).as_deref(),
            Some("Ana Diaz")
        );
        assert_eq!(
            full_name(&[Some("Ana"), Some(""), Some("Diaz")]).as_deref(),
            Some("Ana Diaz")
        );
        assert_eq!(
            full_name(&[Some("Ana"), Some("María"), Some("Diaz")]).as_deref(),
            Some("Ana María Diaz")
        );
        assert_eq!(
            full_name(&[None, None, Some("Diaz")]).as_deref(),
            Some("Diaz")
        );
        assert_eq!(full_name(&[None, Some(""), None]), None);
        assert_eq!(full_name(&[Some("  "), None]), None);
    }

    proptest! {
        #[test]
        fn never_has_double_or_edge_spaces(parts in proptest::collection::vec(proptest::option::of(" ?[a-z]{0,6} ?"), 0..4)) {
            let refs: Vec<Option<&str>> = parts.iter().map(|p| p.as_deref()).collect();
            if let Some(name) = full_name(&refs) {
                prop_assert!(!name.contains("  "));
                prop_assert!(!name.starts_with(' ') && !name.ends_with(' '));
                prop_assert!(!name.is_empty());
            }
        }
    }
}
