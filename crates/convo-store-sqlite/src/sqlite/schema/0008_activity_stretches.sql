-- A coarser level over the activity slices: how many conversations of a location last moved in
-- each 2^30 ms (~12.4 days) stretch of time, 32 slices each. A page's start walks these (about
-- 60 for two years of activity) and then the at most 32 slices inside one, where it walked every
-- slice newer than the page: random pages of the benchmark's largest location walked ~700 of
-- its 1,445 slice rows. Triggers of their own keep it beside the slices, in the writer's own
-- transaction.
CREATE TABLE conversation_activity_stretches (
    institution_id INTEGER NOT NULL,
    location_id    INTEGER NOT NULL,
    stretch        INTEGER NOT NULL, -- updated_at >> 30
    n              INTEGER NOT NULL,
    PRIMARY KEY (institution_id, location_id, stretch)
) WITHOUT ROWID;

INSERT INTO conversation_activity_stretches (institution_id, location_id, stretch, n)
    SELECT institution_id, location_id, updated_at >> 30, count(*)
      FROM conversations GROUP BY 1, 2, 3;

CREATE TRIGGER conversations_stretch_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversation_activity_stretches (institution_id, location_id, stretch, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 30, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER conversations_stretch_delete AFTER DELETE ON conversations BEGIN
    UPDATE conversation_activity_stretches SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND stretch = old.updated_at >> 30;
    DELETE FROM conversation_activity_stretches
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND stretch = old.updated_at >> 30 AND n <= 0;
END;

CREATE TRIGGER conversations_stretch_move
AFTER UPDATE OF institution_id, location_id, updated_at ON conversations
WHEN old.institution_id IS NOT new.institution_id OR old.location_id IS NOT new.location_id
  OR (old.updated_at >> 30) IS NOT (new.updated_at >> 30)
BEGIN
    UPDATE conversation_activity_stretches SET n = n - 1
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND stretch = old.updated_at >> 30;
    DELETE FROM conversation_activity_stretches
     WHERE institution_id = old.institution_id AND location_id = old.location_id
       AND stretch = old.updated_at >> 30 AND n <= 0;
    INSERT INTO conversation_activity_stretches (institution_id, location_id, stretch, n)
        VALUES (new.institution_id, new.location_id, new.updated_at >> 30, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
