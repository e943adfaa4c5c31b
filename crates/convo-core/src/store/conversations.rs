//! Conversations and their messages: the list, one conversation, and every write that moves a
//! conversation's activity (staff sends, seen, a patient's SMS).

use super::keys::{KeyStore, TenantCtx};
use crate::error::{Denied, StoreError};
use crate::model::{Conversation, ConversationPage, Message};
use crate::time::Millis;
use crate::write::{InboundOutcome, InboundSms, NewMessage};
use async_trait::async_trait;

/// One page of the list, in store terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: i64,
    /// Page-number paging: how many to skip (ignored when `cursor` is set).
    pub offset: i64,
    /// Cursor paging (the v20240412 variant): `page_info` instead of `count`.
    pub cursor: Option<crate::cursor::CursorPaging>,
    /// `updated_at >= updated_since` for conversations (and messages, via `MessageQuery`).
    pub updated_since: Option<Millis>,
    /// `None`: messages are not included.
    pub messages: Option<MessageQuery>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageQuery {
    /// Newest this many per conversation (0..=100).
    pub limit: i64,
    pub created_since: Option<Millis>,
    pub updated_since: Option<Millis>,
}

impl ListQuery {
    /// The most rows a page of this query can read: its conversations and, for each, its
    /// messages. An engine may run a read this small inline rather than hand it to a thread.
    pub fn rows_at_most(&self) -> i64 {
        let per_conversation = 1 + self.messages.as_ref().map_or(0, |m| m.limit.max(0));
        self.limit.max(0).saturating_mul(per_conversation)
    }
}

#[async_trait]
pub trait ConversationStore: KeyStore {
    /// One page of a location's conversations, newest activity first, with their messages.
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError>;

    /// `access` and, when it grants, `list_conversations`: the API's hot path, which an engine
    /// can answer in one trip (one connection checkout, one thread hop).
    async fn list_for_key(
        &self,
        key_id: i64,
        scope: (&str, i64),
        query: &ListQuery,
    ) -> Result<Result<(TenantCtx, ConversationPage), Denied>, StoreError> {
        let tenant = match self.access(key_id, scope.0, scope.1).await? {
            Ok(tenant) => tenant,
            Err(denied) => return Ok(Err(denied)),
        };
        let page = self.list_conversations(&tenant, query).await?;
        Ok(Ok((tenant, page)))
    }

    /// One conversation of the tenant's location, with messages when asked.
    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError>;

    /// A staff message: the message, its conversation (created if absent), the conversation's
    /// activity and an outbox entry, in one transaction. A repeat of an `Idempotency-Key`
    /// answers with the first message, however the two requests raced.
    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError>;

    /// Adds `user_id` to a message's `seen_by` (once), moving its and its conversation's
    /// `updated_at`. `NotFound` when the message is not of the tenant's location.
    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError>;

    /// A patient's SMS, routed by the location's number and the patient's; idempotent per
    /// provider message id, however retries race. `NotFound` when no location has the `to`
    /// number.
    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError>;
}
