-- How many conversations of a location last moved in each 2^25 ms (~9.3 h) slice of time.
-- The list is ordered by updated_at, so a page's OFFSET can jump whole slices by their counts
-- and walk the index only inside the slice where the page begins: page 2000 of a 40,000-
-- conversation location walks ~1,500 slice rows instead of 40,000 index entries.
-- Triggers keep it (and locations.conversation_count) right for every writer, in the writer's
-- own transaction.
CREATE TABLE conversation_activity (
    institution_id INTEGER NOT NULL,
    location_id    INTEGER NOT NULL,
    slice          INTEGER NOT NULL, -- updated_at >> 25
    n              INTEGER NOT NULL,
    PRIMARY KEY (institution_id, location_id, slice)
) WITHOUT ROWID;

INSERT INTO conversation_activity (institution_id, location_id, slice, n)
    SELECT institution_id, location_id, updated_at >> 25, count(*)
      FROM conversations GROUP BY 1, 2, 3;

UPDATE locations SET conversation_count =
    (SELECT count(*) FROM conversations c
      WHERE c.institution_id = locations.institution_id AND c.location_id = locations.id);

CREATE TRIGGER conversations_activity_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversation_activity (institution_id, location_id, slice, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 25, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    UPDATE locations SET conversation_count = conversation_count + 1
     WHERE id = new.location_id;
END;

CREATE TRIGGER conversations_activity_delete AFTER DELETE ON conversations BEGIN
    UPDATE conversation_activity SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND slice = old.updated_at >> 25;
    DELETE FROM conversation_activity
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND slice = old.updated_at >> 25 AND n <= 0;
    UPDATE locations SET conversation_count = conversation_count - 1
     WHERE id = old.location_id;
END;

CREATE TRIGGER conversations_activity_move
AFTER UPDATE OF institution_id, location_id, updated_at ON conversations
WHEN old.institution_id IS NOT new.institution_id OR old.location_id IS NOT new.location_id
  OR (old.updated_at >> 25) IS NOT (new.updated_at >> 25)
BEGIN
    UPDATE conversation_activity SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND slice = old.updated_at >> 25;
    DELETE FROM conversation_activity
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND slice = old.updated_at >> 25 AND n <= 0;
    INSERT INTO conversation_activity (institution_id, location_id, slice, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 25, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    UPDATE locations SET conversation_count = conversation_count - 1
     WHERE id = old.location_id AND old.location_id IS NOT new.location_id;
    UPDATE locations SET conversation_count = conversation_count + 1
     WHERE id = new.location_id AND old.location_id IS NOT new.location_id;
END;
