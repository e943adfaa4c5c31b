-- The write side (CONTRACT §6).

-- One row per outgoing SMS: the durable outbox and the delivery record in one. Its id is the
-- message's `sms_msg_id`.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL UNIQUE,
    institution_id  INTEGER NOT NULL,
    location_id     INTEGER NOT NULL,
    to_number       TEXT NOT NULL,
    from_number     TEXT NOT NULL,
    body            TEXT NOT NULL,
    media_url       TEXT,
    status          TEXT NOT NULL
                    CHECK (status IN ('queued', 'sent', 'delivered', 'undelivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When the worker may (re)try it; NULL once the provider took it or it failed for good.
    next_attempt_at INTEGER,
    provider_id     TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE UNIQUE INDEX deliveries_provider ON deliveries (provider_id) WHERE provider_id IS NOT NULL;

-- Providers retry webhooks: one message per provider message id.
CREATE TABLE inbound_sids (
    sid        TEXT PRIMARY KEY,
    message_id INTEGER NOT NULL
) WITHOUT ROWID;

-- Patients by phone number in E.164, for inbound routing and STOP/START. Written by the code that
-- writes patients (normalising needs a phone-number library), so the rows for patients already
-- in the database are filled by the migration runner after this script.
CREATE TABLE patient_phones (
    institution_id INTEGER NOT NULL,
    phone          TEXT NOT NULL,
    patient_id     INTEGER NOT NULL,
    PRIMARY KEY (institution_id, phone, patient_id)
) WITHOUT ROWID;
CREATE INDEX patient_phones_patient ON patient_phones (patient_id);

-- Locations by number in E.164 (the webhook's `To`), filled the same way.
ALTER TABLE locations ADD COLUMN phone_e164 TEXT;
CREATE INDEX locations_phone_e164 ON locations (phone_e164) WHERE phone_e164 IS NOT NULL;

INSERT INTO settings (key, value) VALUES ('backfill_phones', '1');
