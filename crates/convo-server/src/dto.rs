//! The contract's JSON shapes (CONTRACT §3): field order here is the order on the wire, and
//! absent values serialize as `null`, never omitted.

use convo_core::cursor::PageInfo;
use convo_core::time::{Utc, write_offset};
use convo_core::tz::Zone;
use convo_core::{Conversation, ConversationPage, Message, Millis, Paging, Patient};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// The success envelope; `count` only on page-number lists, `page_info` only on cursor lists.
#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub code: bool,
    pub description: &'a str,
    pub error: [(); 0],
    pub data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_info: Option<PageInfoDto>,
}

impl<'a, T: Serialize> Envelope<'a, T> {
    pub fn new(description: &'a str, data: T, count: Option<i64>) -> Self {
        Self {
            code: true,
            description,
            error: [],
            data,
            count,
            page_info: None,
        }
    }
}

/// A 200 with one object, the request's notes as the description (`Success` without any).
pub fn ok_one<T: Serialize>(notes: &[String], data: T) -> axum::response::Response {
    crate::error::json_response(
        axum::http::StatusCode::OK,
        &Envelope::new(&convo_core::params::description(notes), data, None),
    )
}

/// `page_info` of the cursor variant (CONTRACT §4); cursors are null on an empty page.
#[derive(Serialize)]
pub struct PageInfoDto {
    has_previous_page: bool,
    has_next_page: bool,
    start_cursor: Option<String>,
    end_cursor: Option<String>,
}

impl From<&PageInfo> for PageInfoDto {
    fn from(p: &PageInfo) -> Self {
        Self {
            has_previous_page: p.has_previous_page,
            has_next_page: p.has_next_page,
            start_cursor: p.start_cursor.map(|c| c.encode()),
            end_cursor: p.end_cursor.map(|c| c.encode()),
        }
    }
}

/// Stored JSON text (bio, seen_by) passed through as is; a corrupt value degrades to `fallback`.
fn raw<'a>(text: &'a str, fallback: &'static str) -> &'a RawValue {
    if let Ok(value) = serde_json::from_str(text) {
        return value;
    }
    tracing::warn!("stored JSON value is corrupt; serving {fallback}");
    serde_json::from_str(fallback).unwrap_or(RawValue::NULL)
}

#[derive(Serialize)]
pub struct PatientDto<'a> {
    id: i64,
    email: Option<&'a str>,
    first_name: Option<&'a str>,
    middle_name: Option<&'a str>,
    last_name: Option<&'a str>,
    name: Option<String>,
    created_at: Utc,
    updated_at: Utc,
    institution_id: i64,
    foreign_id: Option<&'a str>,
    foreign_id_type: Option<&'a str>,
    bio: &'a RawValue,
    inactive: bool,
    last_sync_time: Option<Utc>,
    guarantor_id: Option<i64>,
    unsubscribe_sms: bool,
}

impl<'a> From<&'a Patient> for PatientDto<'a> {
    fn from(p: &'a Patient) -> Self {
        Self {
            id: p.id,
            email: p.email.as_deref(),
            first_name: p.first_name.as_deref(),
            middle_name: p.middle_name.as_deref(),
            last_name: p.last_name.as_deref(),
            name: p.name(),
            created_at: Utc(p.created_at),
            updated_at: Utc(p.updated_at),
            institution_id: p.institution_id,
            foreign_id: p.foreign_id.as_deref(),
            foreign_id_type: p.foreign_id_type.as_deref(),
            bio: raw(&p.bio, "{}"),
            inactive: p.inactive,
            last_sync_time: p.last_sync_time.map(Utc),
            guarantor_id: p.guarantor_id,
            unsubscribe_sms: p.unsubscribe_sms,
        }
    }
}

#[derive(Serialize)]
struct SenderInfo<'a> {
    name: Option<&'a str>,
    image: Option<&'a str>,
    meta_type: &'static str,
    user_id: Option<i64>,
}

/// `created_at` in the location's zone, with a numeric offset.
struct LocalTime {
    at: Millis,
    offset: i32,
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(32);
        self.at.write_local(self.offset, &mut buf);
        write_offset(self.offset, &mut buf);
        s.serialize_str(&buf)
    }
}

struct OffsetText(i32);

impl Serialize for OffsetText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(9);
        write_offset(self.0, &mut buf);
        s.serialize_str(&buf)
    }
}

#[derive(Serialize)]
pub struct MessageDto<'a> {
    id: i64,
    body: &'a str,
    created_at: Utc,
    updated_at: Utc,
    conversation_id: i64,
    seen_by: &'a RawValue,
    user_id: Option<i64>,
    attachment_file_name: Option<&'a str>,
    attachment_content_type: Option<&'a str>,
    attachment_file_size: Option<i64>,
    attachment_updated_at: Option<Utc>,
    sms_msg_id: Option<i64>,
    sender_info: SenderInfo<'a>,
    attachment_url: Option<&'a str>,
    is_custom_reminder_response: bool,
    created_at_with_tz: LocalTime,
    timezone_offset: OffsetText,
}

impl<'a> MessageDto<'a> {
    pub fn new(m: &'a Message, zone: &Zone) -> Self {
        let offset = zone.offset_at(m.created_at);
        let a = m.attachment.as_ref();
        Self {
            id: m.id,
            body: &m.body,
            created_at: Utc(m.created_at),
            updated_at: Utc(m.updated_at),
            conversation_id: m.conversation_id,
            seen_by: raw(&m.seen_by, "[]"),
            user_id: m.sender.id,
            attachment_file_name: a.and_then(|a| a.file_name.as_deref()),
            attachment_content_type: a.and_then(|a| a.content_type.as_deref()),
            attachment_file_size: a.and_then(|a| a.file_size),
            attachment_updated_at: a.and_then(|a| a.updated_at).map(Utc),
            sms_msg_id: m.sms_msg_id,
            sender_info: SenderInfo {
                name: m.sender.name.as_deref(),
                image: m.sender.image.as_deref(),
                meta_type: m.sender.kind.as_str(),
                user_id: m.sender.id,
            },
            attachment_url: a.and_then(|a| a.url.as_deref()),
            is_custom_reminder_response: m.is_custom_reminder_response,
            created_at_with_tz: LocalTime {
                at: m.created_at,
                offset,
            },
            timezone_offset: OffsetText(offset),
        }
    }
}

/// A conversation's messages, rendered lazily so no intermediate list is built.
struct Messages<'a> {
    list: &'a [Message],
    zone: &'a Zone,
}

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.list.len()))?;
        for m in self.list {
            seq.serialize_element(&MessageDto::new(m, self.zone))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
pub struct ConversationDto<'a> {
    id: i64,
    created_at: Utc,
    updated_at: Utc,
    patient: PatientDto<'a>,
    messages: Messages<'a>,
}

impl<'a> ConversationDto<'a> {
    pub fn new(c: &'a Conversation, zone: &'a Zone) -> Self {
        Self {
            id: c.id,
            created_at: Utc(c.created_at),
            updated_at: Utc(c.updated_at),
            patient: PatientDto::from(&c.patient),
            messages: Messages {
                list: &c.messages,
                zone,
            },
        }
    }
}

/// A page of conversations, rendered lazily.
pub struct ConversationList<'a> {
    pub list: &'a [Conversation],
    pub zone: &'a Zone,
}

impl Serialize for ConversationList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.list.len()))?;
        for c in self.list {
            seq.serialize_element(&ConversationDto::new(c, self.zone))?;
        }
        seq.end()
    }
}

/// The §3 list response body for one page, rendered in `zone` (the route's encoder, and what
/// the serialisation benchmark measures).
pub fn encode_list(
    description: &str,
    page: &ConversationPage,
    zone: &Zone,
) -> Result<Vec<u8>, serde_json::Error> {
    let data = ConversationList {
        list: &page.conversations,
        zone,
    };
    // Sized for a typical page up front: a 70 KB body grown by doubling copies it ~10 times.
    let mut out = Vec::with_capacity(1024 + page.conversations.len() * 4096);
    let envelope = match &page.paging {
        Paging::Count(n) => Envelope::new(description, data, Some(*n)),
        Paging::Cursors(info) => Envelope {
            page_info: Some(PageInfoDto::from(info)),
            ..Envelope::new(description, data, None)
        },
    };
    serde_json::to_writer(&mut out, &envelope)?;
    Ok(out)
}
