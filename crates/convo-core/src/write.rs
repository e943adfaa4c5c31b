//! The write side's inputs and outcomes (CONTRACT §6), and its pure rules.

/// A staff user's message to a patient (`POST /messages`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub patient_id: i64,
    pub user_id: i64,
    /// Trimmed, 1–1600 characters or empty with an attachment (`NewMessage::parse`).
    pub body: String,
    pub attachment: Option<NewAttachment>,
    /// The client's `Idempotency-Key`, scoped to its API key: a repeat of the same send
    /// answers with the first message and writes nothing.
    pub idempotency: Option<IdempotencyKey>,
}

/// The most characters a body may have (one long SMS concatenation, CONTRACT §6).
pub const MAX_CHARS: usize = 1600;

impl NewMessage {
    /// The body rules of CONTRACT §6, shared by every way a staff message is written (the API,
    /// the inbox): the body trimmed and 1–1600 characters, or empty with an attachment that has
    /// a URL; positive ids. Every problem is reported, one sentence each, in the contract's
    /// order. The idempotency key is the caller's to add.
    pub fn parse(
        patient_id: i64,
        user_id: i64,
        body: Option<&str>,
        attachment: Option<NewAttachment>,
    ) -> Result<NewMessage, Vec<String>> {
        let mut errors = Vec::new();
        let body = body.unwrap_or("").trim().to_string();
        let chars = body.chars().count();
        if chars > MAX_CHARS {
            errors.push(format!(
                "message.body must be at most {MAX_CHARS} characters"
            ));
        } else if chars == 0 && attachment.is_none() {
            errors.push("message.body must be 1 to 1600 characters (or send an attachment)".into());
        }
        if let Some(a) = &attachment {
            if a.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                errors.push("message.attachment.url is missing".into());
            }
            if a.file_size.is_some_and(|n| n < 0) {
                errors.push("message.attachment.file_size must not be negative".into());
            }
        }
        if patient_id < 1 {
            errors.push("message.patient_id must be a positive integer".into());
        }
        if user_id < 1 {
            errors.push("message.user_id must be a positive integer".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewMessage {
            patient_id,
            user_id,
            body,
            attachment,
            idempotency: None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub api_key_id: i64,
    pub key: String,
}

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn idempotency_key(value: &str) -> Option<&str> {
    let ok = (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(value)
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewAttachment {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub url: Option<String>,
}

/// An SMS a patient sent, as the provider's webhook reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundSms {
    /// The location's number (as sent by the provider).
    pub to: String,
    pub from: String,
    pub body: String,
    /// The provider's message id: a retried webhook carries the same one.
    pub sid: String,
    pub media: Option<NewAttachment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

/// The carrier keywords of CONTRACT §6: the whole body, trimmed, any case.
pub fn keyword(body: &str) -> Option<Keyword> {
    let word = body.trim().to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPT OUT" => {
            Some(Keyword::OptOut)
        }
        "START" | "YES" | "UNSTOP" => Some(Keyword::OptIn),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundOutcome {
    pub message_id: i64,
    pub conversation_id: i64,
    /// The same provider message id was stored before; nothing new was written.
    pub duplicate: bool,
    pub keyword: Option<Keyword>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        body: Option<&str>,
        attachment: Option<NewAttachment>,
    ) -> Result<NewMessage, Vec<String>> {
        NewMessage::parse(1, 2, body, attachment)
    }

    #[test]
    fn body_length_counts_characters_after_trimming() {
        assert!(parse(Some("  hi  "), None).is_ok_and(|n| n.body == "hi"));
        assert!(parse(Some(&"é".repeat(1600)), None).is_ok());
        assert!(parse(Some(&"a".repeat(1601)), None).is_err());
        assert!(parse(Some("   "), None).is_err());
        assert!(parse(None, None).is_err());
    }

    #[test]
    fn an_attachment_needs_a_url_and_may_go_alone() {
        let a = |url: Option<&str>| NewAttachment {
            file_name: None,
            content_type: Some("image/jpeg".into()),
            file_size: Some(10),
            url: url.map(Into::into),
        };
        assert!(parse(None, Some(a(Some("https://x.example/p.jpg")))).is_ok());
        assert_eq!(
            parse(None, Some(a(None))).err(),
            Some(vec!["message.attachment.url is missing".to_string()])
        );
    }

    #[test]
    fn keywords_are_the_whole_body_in_any_case() {
        for w in [
            "STOP",
            "stop",
            " Stop\n",
            "stopall",
            "Unsubscribe",
            "cancel",
            "END",
            "quit",
        ] {
            assert_eq!(keyword(w), Some(Keyword::OptOut), "{w}");
        }
        assert_eq!(keyword("revoke"), Some(Keyword::OptOut));
        assert_eq!(keyword("opt out"), Some(Keyword::OptOut));
        for w in ["START", "yes", " Unstop "] {
            assert_eq!(keyword(w), Some(Keyword::OptIn), "{w}");
        }
        for w in [
            "stop it",
            "please stop",
            "STOP!",
            "",
            "opt-out",
            "yes please",
        ] {
            assert_eq!(keyword(w), None, "{w}");
        }
    }
}

/// Among the patients of an institution sharing the number an SMS came from (`(id,
/// guarantor_id)`), the one it is for: the family's guarantor, else the lowest id.
pub fn pick_patient(matches: &[(i64, Option<i64>)]) -> Option<i64> {
    let guarantor = matches.iter().map(|&(id, _)| id).find(|id| {
        matches
            .iter()
            .any(|&(other, g)| other != *id && g == Some(*id))
    });
    guarantor.or_else(|| matches.iter().map(|&(id, _)| id).min())
}

#[cfg(test)]
mod pick_tests {
    use super::pick_patient;

    #[test]
    fn a_shared_number_goes_to_the_guarantor_else_the_lowest_id() {
        assert_eq!(pick_patient(&[]), None);
        assert_eq!(pick_patient(&[(7, None)]), Some(7));
        assert_eq!(pick_patient(&[(9, None), (4, None)]), Some(4));
        // 9 is the guarantor of 4 and 12.
        assert_eq!(
            pick_patient(&[(4, Some(9)), (9, None), (12, Some(9))]),
            Some(9)
        );
        // A guarantor outside the matches does not count.
        assert_eq!(pick_patient(&[(5, Some(1)), (6, Some(1))]), Some(5));
    }
}
