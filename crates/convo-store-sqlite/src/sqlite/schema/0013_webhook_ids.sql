-- Ids are never used twice (as on PostgreSQL, whose sequences never go back): a subscription
-- made after another was deleted must not take the deleted one's id (PostgreSQL's queued
-- events name their subscriptions by id; an integrator's records do too); an event's id is its
-- `webhook-id`, which a receiver may deduplicate on, so a new event must not take the id of
-- one the purge removed; an endpoint's attempts are listed by its id. SQLite reuses the
-- largest rowid once its row is gone unless the table is AUTOINCREMENT, so the three tables
-- are rebuilt as such.
ALTER TABLE webhook_endpoints RENAME TO webhook_endpoints_0013;
CREATE TABLE webhook_endpoints (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    api_key_id      INTEGER NOT NULL,
    target_url      TEXT NOT NULL,
    secret_key      TEXT NOT NULL,
    active          INTEGER NOT NULL,
    failing_since   INTEGER,
    last_success_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    leased_by       INTEGER
);
INSERT INTO webhook_endpoints (id, api_key_id, target_url, secret_key, active, failing_since,
    last_success_at, created_at, updated_at, leased_by)
SELECT id, api_key_id, target_url, secret_key, active, failing_since, last_success_at,
       created_at, updated_at, leased_by
  FROM webhook_endpoints_0013;
DROP TABLE webhook_endpoints_0013;
CREATE INDEX webhook_endpoints_key ON webhook_endpoints (api_key_id);

ALTER TABLE webhook_subscriptions RENAME TO webhook_subscriptions_0013;
CREATE TABLE webhook_subscriptions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id    INTEGER NOT NULL,
    institution_id INTEGER NOT NULL,
    event          TEXT NOT NULL CHECK (event IN ('message_created', 'message_updated')),
    active         INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (endpoint_id, institution_id, event)
);
INSERT INTO webhook_subscriptions (id, endpoint_id, institution_id, event, active, created_at,
    updated_at)
SELECT id, endpoint_id, institution_id, event, active, created_at, updated_at
  FROM webhook_subscriptions_0013;
DROP TABLE webhook_subscriptions_0013;
CREATE INDEX webhook_subscriptions_match ON webhook_subscriptions (institution_id, event);

ALTER TABLE webhook_events RENAME TO webhook_events_0013;
CREATE TABLE webhook_events (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    event                       TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    institution_id              INTEGER NOT NULL,
    location_id                 INTEGER NOT NULL,
    patient_id                  INTEGER NOT NULL,
    subdomain                   TEXT NOT NULL,
    tz                          TEXT NOT NULL,
    message_id                  INTEGER NOT NULL,
    conversation_id             INTEGER NOT NULL,
    body                        TEXT NOT NULL,
    message_created_at          INTEGER NOT NULL,
    message_updated_at          INTEGER NOT NULL,
    sender_type                 TEXT NOT NULL,
    sender_id                   INTEGER,
    seen_by                     TEXT NOT NULL,
    has_attachment              INTEGER NOT NULL,
    attachment_file_name        TEXT,
    attachment_content_type     TEXT,
    attachment_file_size        INTEGER,
    attachment_url              TEXT,
    attachment_updated_at       INTEGER,
    sms_msg_id                  INTEGER,
    is_custom_reminder_response INTEGER NOT NULL,
    user_first_name             TEXT,
    user_last_name              TEXT,
    user_image                  TEXT,
    patient_first_name          TEXT,
    patient_middle_name         TEXT,
    patient_last_name           TEXT,
    delivery_status             TEXT,
    delivery_error              TEXT
);
INSERT INTO webhook_events SELECT * FROM webhook_events_0013;
DROP TABLE webhook_events_0013;
CREATE INDEX webhook_events_time ON webhook_events (institution_id, created_at);
CREATE INDEX webhook_events_age ON webhook_events (created_at);
