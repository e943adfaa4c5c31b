//! The contract's JSON shapes (CONTRACT §3): the order of the writes here is the order on the
//! wire, and absent values are written as `null`, never omitted.

use crate::json::Json;
use axum::http::StatusCode;
use axum::response::Response;
use convo_core::cursor::PageInfo;
use convo_core::tz::Zone;
use convo_core::{Conversation, ConversationPage, Message, Paging, Patient};

/// What follows `data` in the success envelope: `count` on page-number lists, `page_info` on
/// cursor lists, nothing on single objects.
pub enum Tail<'a> {
    Nothing,
    Count(i64),
    PageInfo(&'a PageInfo),
}

/// The success envelope around `data`, encoded; `size` is a guess of the body's length.
pub fn envelope(
    description: &str,
    size: usize,
    data: impl FnOnce(&mut Json),
    tail: Tail<'_>,
) -> Vec<u8> {
    let mut j = Json::with_capacity(size);
    j.raw("{\"code\":true,\"description\":");
    j.str(description);
    j.raw(",\"error\":[],\"data\":");
    data(&mut j);
    match tail {
        Tail::Nothing => {}
        Tail::Count(n) => {
            j.raw(",\"count\":");
            j.int(n);
        }
        Tail::PageInfo(p) => {
            // Cursors are null on an empty page (CONTRACT §4).
            j.raw(",\"page_info\":{\"has_previous_page\":");
            j.bool(p.has_previous_page);
            j.raw(",\"has_next_page\":");
            j.bool(p.has_next_page);
            j.raw(",\"start_cursor\":");
            j.opt_str(p.start_cursor.map(|c| c.encode()).as_deref());
            j.raw(",\"end_cursor\":");
            j.opt_str(p.end_cursor.map(|c| c.encode()).as_deref());
            j.raw("}");
        }
    }
    j.raw("}");
    j.into_bytes()
}

/// A success response with one object as `data`, `description` as given.
pub fn ok_object(status: StatusCode, description: &str, data: impl FnOnce(&mut Json)) -> Response {
    crate::error::json_bytes(status, envelope(description, 2048, data, Tail::Nothing))
}

/// A 200 with one object, the request's notes as the description (`Success` without any).
pub fn ok_one(notes: &[String], data: impl FnOnce(&mut Json)) -> Response {
    ok_object(
        StatusCode::OK,
        &convo_core::params::description(notes),
        data,
    )
}

pub fn patient(j: &mut Json, p: &Patient) {
    j.raw("{\"id\":");
    j.int(p.id);
    j.raw(",\"email\":");
    j.opt_str(p.email.as_deref());
    j.raw(",\"first_name\":");
    j.opt_str(p.first_name.as_deref());
    j.raw(",\"middle_name\":");
    j.opt_str(p.middle_name.as_deref());
    j.raw(",\"last_name\":");
    j.opt_str(p.last_name.as_deref());
    j.raw(",\"name\":");
    j.opt_str(p.name().as_deref());
    j.raw(",\"created_at\":");
    j.utc(p.created_at);
    j.raw(",\"updated_at\":");
    j.utc(p.updated_at);
    j.raw(",\"institution_id\":");
    j.int(p.institution_id);
    j.raw(",\"foreign_id\":");
    j.opt_str(p.foreign_id.as_deref());
    j.raw(",\"foreign_id_type\":");
    j.opt_str(p.foreign_id_type.as_deref());
    j.raw(",\"bio\":");
    j.stored(&p.bio, "{}");
    j.raw(",\"inactive\":");
    j.bool(p.inactive);
    j.raw(",\"last_sync_time\":");
    j.opt_utc(p.last_sync_time);
    j.raw(",\"guarantor_id\":");
    j.opt_int(p.guarantor_id);
    j.raw(",\"unsubscribe_sms\":");
    j.bool(p.unsubscribe_sms);
    j.raw("}");
}

/// A message; `created_at_with_tz` and `timezone_offset` in the location's zone.
pub fn message(j: &mut Json, m: &Message, zone: &Zone) {
    message_fields(j, m, zone);
    j.raw("}");
}

/// A message object without its closing brace, for bodies that add keys after §3's (webhook
/// events).
pub fn message_fields(j: &mut Json, m: &Message, zone: &Zone) {
    let offset = zone.offset_at(m.created_at);
    let a = m.attachment.as_ref();
    j.raw("{\"id\":");
    j.int(m.id);
    j.raw(",\"body\":");
    j.str(&m.body);
    j.raw(",\"created_at\":");
    j.utc(m.created_at);
    j.raw(",\"updated_at\":");
    j.utc(m.updated_at);
    j.raw(",\"conversation_id\":");
    j.int(m.conversation_id);
    j.raw(",\"seen_by\":");
    j.stored(&m.seen_by, "[]");
    j.raw(",\"user_id\":");
    j.opt_int(m.sender.id);
    j.raw(",\"attachment_file_name\":");
    j.opt_str(a.and_then(|a| a.file_name.as_deref()));
    j.raw(",\"attachment_content_type\":");
    j.opt_str(a.and_then(|a| a.content_type.as_deref()));
    j.raw(",\"attachment_file_size\":");
    j.opt_int(a.and_then(|a| a.file_size));
    j.raw(",\"attachment_updated_at\":");
    j.opt_utc(a.and_then(|a| a.updated_at));
    j.raw(",\"sms_msg_id\":");
    j.opt_int(m.sms_msg_id);
    j.raw(",\"sender_info\":{\"name\":");
    j.opt_str(m.sender.name.as_deref());
    j.raw(",\"image\":");
    j.opt_str(m.sender.image.as_deref());
    j.raw(",\"meta_type\":");
    j.str(m.sender.kind.as_str());
    j.raw(",\"user_id\":");
    j.opt_int(m.sender.id);
    j.raw("},\"attachment_url\":");
    j.opt_str(a.and_then(|a| a.url.as_deref()));
    j.raw(",\"is_custom_reminder_response\":");
    j.bool(m.is_custom_reminder_response);
    j.raw(",\"created_at_with_tz\":");
    j.local(m.created_at, offset);
    j.raw(",\"timezone_offset\":");
    j.offset(offset);
}

pub fn conversation(j: &mut Json, c: &Conversation, zone: &Zone) {
    j.raw("{\"id\":");
    j.int(c.id);
    j.raw(",\"created_at\":");
    j.utc(c.created_at);
    j.raw(",\"updated_at\":");
    j.utc(c.updated_at);
    j.raw(",\"patient\":");
    patient(j, &c.patient);
    j.raw(",\"messages\":");
    j.list(&c.messages, |j, m| message(j, m, zone));
    j.raw("}");
}

/// The §3 list response body for one page, rendered in `zone` (the route's encoder, and what
/// the serialisation benchmark measures).
pub fn encode_list(description: &str, page: &ConversationPage, zone: &Zone) -> Vec<u8> {
    // Sized for a typical page up front: a 70 KB body grown by doubling copies it ~10 times.
    let messages: usize = page.conversations.iter().map(|c| c.messages.len()).sum();
    let size = 1024 + page.conversations.len() * 1024 + messages * 700;
    let tail = match &page.paging {
        Paging::Count(n) => Tail::Count(*n),
        Paging::Cursors(info) => Tail::PageInfo(info),
    };
    let data = |j: &mut Json| j.list(&page.conversations, |j, c| conversation(j, c, zone));
    envelope(description, size, data, tail)
}
