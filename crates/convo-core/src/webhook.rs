//! Message webhooks' domain rules (CONTRACT §8): which subscriptions exist, and what a
//! subscription request must say.

/// The one resource convo sends events for.
pub const RESOURCE_TYPE: &str = "Message";

/// A subscription's event, and an event's `event_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// Every new message: a staff send, an inbound SMS (imports fire nothing).
    MessageCreated,
    /// A change of any field of the message object: `seen_by`, `updated_at`, a staff message's
    /// delivery status.
    MessageUpdated,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 2] = [WebhookEvent::MessageCreated, WebhookEvent::MessageUpdated];

    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::MessageCreated => "message_created",
            WebhookEvent::MessageUpdated => "message_updated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What a subscription request (`POST …/webhook_subscriptions`) asks for: `resource_type`
/// `Message` and an event convo fires. Every problem is reported, one sentence each, naming the
/// supported values (NexHealth's enum has more resources; convo sends only these).
pub fn subscription_event(
    resource_type: Option<&str>,
    event: Option<&str>,
) -> Result<WebhookEvent, Vec<String>> {
    let mut errors = Vec::new();
    match resource_type {
        Some(RESOURCE_TYPE) => {}
        Some(_) => errors.push(format!("resource_type must be {RESOURCE_TYPE}")),
        None => errors.push(format!(
            "resource_type is missing (it must be {RESOURCE_TYPE})"
        )),
    }
    let supported = || WebhookEvent::ALL.map(WebhookEvent::as_str).join(" or ");
    let parsed = match event {
        Some(e) => WebhookEvent::parse(e).or_else(|| {
            errors.push(format!("event must be {}", supported()));
            None
        }),
        None => {
            errors.push(format!("event is missing (it must be {})", supported()));
            None
        }
    };
    match parsed {
        Some(event) if errors.is_empty() => Ok(event),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_by_name() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("Message_Created"), None);
        assert_eq!(WebhookEvent::parse("patient_created"), None);
    }

    #[test]
    fn a_subscription_asks_for_a_message_event() {
        assert_eq!(
            subscription_event(Some("Message"), Some("message_updated")),
            Ok(WebhookEvent::MessageUpdated)
        );
        assert_eq!(
            subscription_event(Some("Patient"), Some("patient_created")),
            Err(vec![
                "resource_type must be Message".to_string(),
                "event must be message_created or message_updated".to_string(),
            ])
        );
        assert_eq!(
            subscription_event(None, None),
            Err(vec![
                "resource_type is missing (it must be Message)".to_string(),
                "event is missing (it must be message_created or message_updated)".to_string(),
            ])
        );
        assert_eq!(
            subscription_event(Some("message"), Some("message_created")),
            Err(vec!["resource_type must be Message".to_string()])
        );
    }
}
