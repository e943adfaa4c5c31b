-- A worker's claims by endpoint (issue 15's bench): giving back the leases of endpoints where
-- it holds nothing asked, each trip, for every delivery it holds (up to 256 per endpoint,
-- ~2,500 here) to build a NOT IN list, 2.6 ms a trip at 500 sends/s with 10 endpoints, the
-- trip's costliest statement. With the endpoint in the index it is one probe per leased
-- endpoint.
DROP INDEX webhook_deliveries_claimed;
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_by, endpoint_id)
    WHERE claimed_by IS NOT NULL;
