-- Fewer B-trees per webhook delivery (issue 15's bench): every staff send writes one delivery
-- per subscription, and an index keyed by endpoint or subscription dirties a different page per
-- row. What remains: each endpoint's pending deliveries in the order a claim takes them (which
-- also finds an endpoint's or a subscription's pending deliveries when it goes), an event's
-- deliveries (purge, replay), and the few claimed rows. Finished deliveries of a deleted
-- endpoint or subscription stay until the retention purge removes them.
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_endpoint;
DROP INDEX webhook_deliveries_subscription;
