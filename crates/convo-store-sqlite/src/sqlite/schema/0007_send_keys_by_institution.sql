-- Idempotency keys belong to the API key and the institution they were used in, as on
-- PostgreSQL (whose tenant tables are keyed by institution first, to be distributable): the
-- same key sent for another institution is another send.
CREATE TABLE send_keys_by_institution (
    institution_id INTEGER NOT NULL,
    api_key_id     INTEGER NOT NULL,
    key            TEXT NOT NULL,
    message_id     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (institution_id, api_key_id, key)
) WITHOUT ROWID;

INSERT INTO send_keys_by_institution (institution_id, api_key_id, key, message_id, created_at)
    SELECT c.institution_id, s.api_key_id, s.key, s.message_id, s.created_at
      FROM send_keys s
      JOIN messages m ON m.id = s.message_id
      JOIN conversations c ON c.id = m.conversation_id;

DROP TABLE send_keys;
ALTER TABLE send_keys_by_institution RENAME TO send_keys;
