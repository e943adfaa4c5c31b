-- A finer level under the activity slices: how many conversations of a location last moved in
-- each 2^20 ms (~17.5 min), 32 to a slice. Recent activity is dense (the benchmark's largest
-- location had 1,430 conversations in its newest slice), and inside the last level a page's
-- start walks the list index entry by entry: page 500 skipped 256 entries, the first pages up
-- to 1,400. Walking stretch, slice, then fine (at most 32 rows each below the stretches) leaves
-- at most a few dozen entries to skip. Triggers of their own keep it, as for the stretches.
CREATE TABLE conversation_activity_fine (
    institution_id INTEGER NOT NULL,
    location_id    INTEGER NOT NULL,
    fine           INTEGER NOT NULL, -- updated_at >> 20
    n              INTEGER NOT NULL,
    PRIMARY KEY (institution_id, location_id, fine)
) WITHOUT ROWID;

INSERT INTO conversation_activity_fine (institution_id, location_id, fine, n)
    SELECT institution_id, location_id, updated_at >> 20, count(*)
      FROM conversations GROUP BY 1, 2, 3;

CREATE TRIGGER conversations_fine_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversation_activity_fine (institution_id, location_id, fine, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 20, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER conversations_fine_delete AFTER DELETE ON conversations BEGIN
    UPDATE conversation_activity_fine SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND fine = old.updated_at >> 20;
    DELETE FROM conversation_activity_fine
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND fine = old.updated_at >> 20 AND n <= 0;
END;

CREATE TRIGGER conversations_fine_move
AFTER UPDATE OF institution_id, location_id, updated_at ON conversations
WHEN old.institution_id IS NOT new.institution_id OR old.location_id IS NOT new.location_id
  OR (old.updated_at >> 20) IS NOT (new.updated_at >> 20)
BEGIN
    UPDATE conversation_activity_fine SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND fine = old.updated_at >> 20;
    DELETE FROM conversation_activity_fine
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND fine = old.updated_at >> 20 AND n <= 0;
    INSERT INTO conversation_activity_fine (institution_id, location_id, fine, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 20, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
