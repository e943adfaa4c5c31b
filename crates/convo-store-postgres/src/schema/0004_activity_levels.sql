-- Two more levels of the activity counts, as SQLite has (its migrations 0008 and 0009). A deep
-- page summed every slice newer than it (random pages of the benchmark's largest location
-- summed about 700 of its 1,445 slices), then skipped up to 1,400 index entries inside the
-- newest, densest slice. A page now walks stretches of 2^30 ms, the at most 32 slices inside
-- the one holding its offset, the at most 32 fine steps of 2^20 ms inside that slice, and
-- skips a few dozen entries. A level is named by its shift; `slice` is `updated_at >> shift`.
-- No default: a writer that forgets the level fails instead of counting into the wrong one.
ALTER TABLE conversation_activity ADD COLUMN shift smallint NOT NULL DEFAULT 25;
ALTER TABLE conversation_activity ALTER COLUMN shift DROP DEFAULT;
ALTER TABLE conversation_activity DROP CONSTRAINT conversation_activity_pkey;
ALTER TABLE conversation_activity ADD PRIMARY KEY (institution_id, location_id, shift, slice, stripe);
INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
    SELECT c.institution_id, c.location_id, l.shift, c.updated_at >> l.shift, 0, count(*)
      FROM conversations c, (VALUES (20::smallint), (30::smallint)) l (shift)
     GROUP BY 1, 2, 3, 4;
