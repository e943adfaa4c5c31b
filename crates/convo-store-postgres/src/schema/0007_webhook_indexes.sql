-- Fewer B-trees per webhook delivery (issue 15's bench, as SQLite's migration 0011): every
-- staff send writes one delivery per subscription, and a claim and a recorded attempt each
-- update it in columns that are indexed, so every index gets a new entry three times per
-- delivery. What remains: each endpoint's pending deliveries in the order a claim takes them
-- (which also finds an endpoint's or a subscription's pending deliveries when it goes or
-- moves, and the next due time), an event's deliveries (purge, replay), and the claimed rows.
-- Finished deliveries of a deleted endpoint or subscription stay until the retention purge.
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_endpoint;
DROP INDEX webhook_deliveries_subscription;
