//! The cases, one module per concern. Each is `async fn(Db)`, registered in `all`.

mod counts;
mod cursors;
mod idempotency;
mod import;
mod inbound;
mod keys;
mod listing;
mod outbox;
mod sends;
mod tenancy;
mod webhooks;

use crate::{Case, Db};

macro_rules! cases {
    ($($concern:ident :: $name:ident),* $(,)?) => {
        vec![$((
            concat!(stringify!($concern), "/", stringify!($name)),
            (|db: Db| -> crate::CaseFuture { Box::pin($concern::$name(db)) }) as fn(Db) -> crate::CaseFuture,
        )),*]
    };
}

pub fn all() -> Vec<Case> {
    cases![
        listing::page_numbers_give_the_plain_order,
        listing::pages_start_right_at_slice_edges,
        listing::pages_follow_live_writes,
        listing::each_conversation_carries_its_newest_messages,
        listing::one_conversation_of_the_location,
        counts::counts_agree_with_the_records,
        counts::counts_and_order_follow_a_second_import,
        cursors::cursor_walks_give_the_plain_order_both_ways,
        cursors::a_cursor_walk_is_stable_under_concurrent_writes,
        cursors::cursor_walks_split_ties_at_slice_edges,
        sends::a_send_writes_message_thread_and_outbox,
        sends::each_refusal_of_a_send_is_typed,
        sends::seen_adds_a_user_once_and_moves_activity,
        inbound::a_patient_sms_is_routed_by_both_numbers,
        inbound::keywords_opt_a_number_out_and_in,
        inbound::unknown_numbers_and_replies_to_reminders,
        idempotency::a_repeated_key_answers_with_the_first_message,
        idempotency::concurrent_sends_with_one_key_store_one_message,
        idempotency::concurrent_retries_of_one_sms_store_one_message,
        outbox::claims_belong_to_live_owners,
        outbox::attempts_and_callbacks_settle_a_delivery,
        outbox::operators_retry_only_what_failed,
        outbox::an_opt_out_stops_a_queued_send,
        outbox::a_claim_passes_over_opted_out_sends_beyond_its_window,
        keys::keys_grant_scopes_in_the_contracts_order,
        keys::revoking_a_key_ends_it_everywhere,
        import::imports_and_derives_activity,
        import::importing_twice_changes_nothing,
        import::a_bad_line_anywhere_writes_nothing,
        import::integrity_rules_are_refused_with_their_line,
        import::integrity_rules_hold_on_a_first_load,
        import::a_first_load_keeps_the_last_line_of_an_id,
        import::a_first_load_with_interleaved_kinds_writes_every_record,
        import::an_input_that_stops_early_writes_nothing,
        tenancy::no_store_call_crosses_an_institution,
        webhooks::endpoints_belong_to_their_key,
        webhooks::subscriptions_are_one_per_event_and_filterable,
        webhooks::writes_freeze_their_events_at_commit,
        webhooks::nothing_is_queued_for_what_is_inactive,
        webhooks::attempts_settle_deliveries_and_endpoints,
        webhooks::endpoints_are_leased_to_one_worker_at_a_time,
        webhooks::a_lease_goes_back_when_its_worker_holds_nothing_there,
        webhooks::a_recheck_keeps_what_may_still_go_and_gives_back_the_rest,
        webhooks::deleting_stops_pending_deliveries,
        webhooks::replay_queues_stored_events_again,
        webhooks::what_matched_at_commit_is_what_is_delivered,
        webhooks::a_settled_delivery_is_recorded_once,
        webhooks::no_subscription_receives_another_institutions_events,
    ]
}
