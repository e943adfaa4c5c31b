-- Deliveries are written by the worker, not by the send (issue 15's bench): a change that
-- fires an event writes the event and one row here naming the subscriptions it matched at
-- commit; the worker's next trip turns that row into one delivery per subscription that still
-- exists (where it is now), under the claim lock, before it leases and claims. A send writes
-- two rows instead of one per subscription, and the deliveries' B-trees are filled in one
-- statement per trip.
CREATE TABLE webhook_fanout (
    event_id         bigint PRIMARY KEY,
    created_at       bigint NOT NULL,
    subscription_ids bigint[] NOT NULL
);
