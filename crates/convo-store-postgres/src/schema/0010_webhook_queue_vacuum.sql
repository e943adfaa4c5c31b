-- The delivery queue churns (issue 15's bench): every delivery is a row inserted, claimed and
-- deleted when it settles (its history is its attempt rows), and each claim steps over the
-- dead versions in the due index until a vacuum removes them. By default autovacuum waits for
-- a fifth of the table to be dead; for a queue that is too late, so these two tables are
-- vacuumed whenever autovacuum visits (`autovacuum_naptime`, a minute by default) and 10,000
-- rows have died. The README's PostgreSQL notes say how to make the visits more frequent.
ALTER TABLE webhook_deliveries SET (autovacuum_vacuum_scale_factor = 0,
                                    autovacuum_vacuum_threshold = 10000,
                                    autovacuum_vacuum_insert_scale_factor = 0,
                                    autovacuum_vacuum_insert_threshold = 10000);
ALTER TABLE webhook_fanout SET (autovacuum_vacuum_scale_factor = 0,
                                autovacuum_vacuum_threshold = 10000,
                                autovacuum_vacuum_insert_scale_factor = 0,
                                autovacuum_vacuum_insert_threshold = 10000);
