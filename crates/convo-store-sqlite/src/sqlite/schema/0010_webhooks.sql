-- Message webhooks (CONTRACT §8, issue 15).

-- An API key's endpoints. `failing_since`: the first failed attempt since the last success
-- (NULL: not failing); 48 hours of it deactivate the endpoint, as does a delivery that spends
-- its schedule with no success since it began (`last_success_at`).
CREATE TABLE webhook_endpoints (
    id              INTEGER PRIMARY KEY,
    api_key_id      INTEGER NOT NULL,
    target_url      TEXT NOT NULL,
    secret_key      TEXT NOT NULL,
    active          INTEGER NOT NULL,
    failing_since   INTEGER,
    last_success_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_key ON webhook_endpoints (api_key_id);

CREATE TABLE webhook_subscriptions (
    id             INTEGER PRIMARY KEY,
    endpoint_id    INTEGER NOT NULL,
    institution_id INTEGER NOT NULL,
    event          TEXT NOT NULL CHECK (event IN ('message_created', 'message_updated')),
    active         INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (endpoint_id, institution_id, event)
);
-- What every message write asks at commit: does anyone want this institution's event?
CREATE INDEX webhook_subscriptions_match ON webhook_subscriptions (institution_id, event);

-- An event as it was at commit: the message's columns as `message_columns!()` reads them, where
-- it belongs, and a staff message's delivery status then. Written only when a subscription
-- matched, so a database without subscriptions writes nothing here.
CREATE TABLE webhook_events (
    id                          INTEGER PRIMARY KEY,
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
CREATE INDEX webhook_events_time ON webhook_events (institution_id, created_at);
CREATE INDEX webhook_events_age ON webhook_events (created_at);

-- One per (event, subscription) matched at commit, or per replay. `errors`: JSON array of the
-- earlier attempts' errors, oldest first, at most 10. Claims as the SMS outbox's.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL,
    endpoint_id      INTEGER NOT NULL,
    subscription_id  INTEGER,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,
    next_attempt_at  INTEGER,
    errors           TEXT NOT NULL DEFAULT '[]',
    claimed_by       INTEGER,
    claimed_at       INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);
-- A claim takes each endpoint's oldest due deliveries: one index range per endpoint.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_by)
    WHERE claimed_by IS NOT NULL;

-- Every attempt, for operators (never a body or a secret). Kept when its delivery goes.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    event_id    INTEGER NOT NULL,
    endpoint_id INTEGER NOT NULL,
    event       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status INTEGER,
    error       TEXT,
    took_ms     INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_age ON webhook_attempts (at);
