-- Where a worker runs: the kernel's boot id and the process's PID namespace. A process that
-- starts where a dead one ran (same boot, same namespace, its pid gone) takes that worker's
-- claims back at once instead of waiting for its heartbeat to go stale, as SQLite's single
-- server does; claims of workers elsewhere still wait for staleness.
ALTER TABLE workers ADD COLUMN home text;
