-- Outbox claims name their owner (issue 11). A claim used to be a 2-minute lease, so a crash
-- delayed a text by minutes and a slower provider would have caused a second send. Now a claim
-- is held by a worker for as long as that worker heartbeats; a worker that stopped renewing loses
-- its claims to the others, and a SQLite server (the database's only owner) takes back every
-- claim when it starts.
CREATE TABLE workers (
    id           INTEGER PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    pid          INTEGER NOT NULL
);

-- The worker holding the send (NULL: free to claim) and since when.
ALTER TABLE deliveries ADD COLUMN claimed_by INTEGER;
ALTER TABLE deliveries ADD COLUMN claimed_at INTEGER;
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
