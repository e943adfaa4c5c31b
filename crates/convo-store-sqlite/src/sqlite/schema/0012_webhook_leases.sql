-- Endpoints are leased (issue 15's bench): the worker that holds an endpoint's lease is the
-- only one claiming its deliveries, so it can hold the next ones queued in memory and keep the
-- 4-in-flight limit there, instead of a trip to the database for every freed slot. A lease
-- goes back when its worker holds no claim at the endpoint, stops, or stops heartbeating.
ALTER TABLE webhook_endpoints ADD COLUMN leased_by INTEGER;
