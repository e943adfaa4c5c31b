-- Idempotency keys of staff sends (`Idempotency-Key` on POST /messages): a client that retries
-- a send whose answer it never got gets the first message back instead of texting twice.
CREATE TABLE send_keys (
    api_key_id INTEGER NOT NULL,
    key        TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, key)
) WITHOUT ROWID;
