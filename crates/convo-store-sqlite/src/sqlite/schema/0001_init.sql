-- Timestamps are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE institutions (
    id        INTEGER PRIMARY KEY,
    subdomain TEXT NOT NULL,
    name      TEXT NOT NULL
);
-- Subdomain values are case-insensitive (CONTRACT §7).
CREATE UNIQUE INDEX institutions_subdomain ON institutions (subdomain COLLATE NOCASE);

CREATE TABLE locations (
    id                 INTEGER PRIMARY KEY,
    institution_id     INTEGER NOT NULL REFERENCES institutions (id),
    name               TEXT NOT NULL,
    tz                 TEXT NOT NULL,
    phone_number       TEXT,
    -- Kept on write so that `count` never scans the location's conversations.
    conversation_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX locations_institution ON locations (institution_id);
CREATE INDEX locations_phone ON locations (phone_number) WHERE phone_number IS NOT NULL;

CREATE TABLE patients (
    id              INTEGER PRIMARY KEY,
    institution_id  INTEGER NOT NULL REFERENCES institutions (id),
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    foreign_id      TEXT,
    foreign_id_type TEXT,
    bio             TEXT NOT NULL DEFAULT '{}',
    inactive        INTEGER NOT NULL DEFAULT 0,
    last_sync_time  INTEGER,
    guarantor_id    INTEGER,
    unsubscribe_sms INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX patients_institution ON patients (institution_id);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    first_name     TEXT,
    last_name      TEXT,
    email          TEXT,
    image          TEXT
);
CREATE INDEX users_institution ON users (institution_id);

CREATE TABLE conversations (
    id             INTEGER PRIMARY KEY,
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    location_id    INTEGER NOT NULL REFERENCES locations (id),
    patient_id     INTEGER NOT NULL REFERENCES patients (id),
    created_at     INTEGER NOT NULL,
    -- Last activity (CONTRACT §3), kept on write so reads never aggregate over messages.
    updated_at     INTEGER NOT NULL,
    UNIQUE (location_id, patient_id)
);
-- The list is a range scan of this index, covering for the page's ids.
CREATE INDEX conversations_list
    ON conversations (institution_id, location_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                          INTEGER PRIMARY KEY,
    conversation_id             INTEGER NOT NULL REFERENCES conversations (id),
    body                        TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    sender_type                 TEXT NOT NULL CHECK (sender_type IN ('Patient', 'User', 'System')),
    sender_id                   INTEGER,
    -- JSON array of user ids as strings, in the order they saw the message.
    seen_by                     TEXT NOT NULL DEFAULT '[]',
    attachment_file_name        TEXT,
    attachment_content_type     TEXT,
    attachment_file_size        INTEGER,
    attachment_url              TEXT,
    attachment_updated_at       INTEGER,
    has_attachment              INTEGER NOT NULL DEFAULT 0,
    sms_msg_id                  INTEGER,
    is_custom_reminder_response INTEGER NOT NULL DEFAULT 0
);
-- Newest-N of a thread is a range scan; the second serves `updated_since` polling.
CREATE INDEX messages_thread ON messages (conversation_id, created_at DESC, id DESC);
CREATE INDEX messages_updated ON messages (conversation_id, updated_at, created_at);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    -- SHA-256 of the raw key; the key itself is never stored.
    key_hash   BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE api_key_institutions (
    key_id         INTEGER NOT NULL REFERENCES api_keys (id),
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    PRIMARY KEY (key_id, institution_id)
) WITHOUT ROWID;
