-- tasktable 10: live_task's payload size CHECK no longer turns the payload into text on every write. Same functions,
-- same limits for them.
--
-- PostgreSQL evaluates every CHECK of a table on each new row version, so octet_length(payload::text) serialized
-- the whole payload at every claim, heartbeat and failure, not only at enqueue. pg_column_size reads the stored
-- size from the value's header. pgbench, one client, the claim of V5 in plain SQL on two tables with live_task's
-- columns and claim indexes that differ only in this CHECK, alternating in one script (so a drifting machine slows
-- both alike), claims of 500, 200,000 tasks (session 7):
--   payloads of about 1,000 bytes   20.1 / 20.6 ms per claim -> 17.3 / 18.9; the copies in the other order 18.1 / 17.4 -> 15.5 / 15.4
--   payloads of about 60 bytes      11.3 / 10.7 ms per claim -> 10.6 / 10.1
--
-- The limit the functions enforce is unchanged: enqueue_tasks refuses a payload whose text exceeds 1 MB (TT003)
-- before it writes. This CHECK is the table's backstop for rows written by hand, and it accepts every payload the
-- functions accept: a payload passes when its stored size is at most 1 MB, and only one larger than that is
-- serialized to compare its text with the limit, as before. (The stored size alone would not do: a jsonb array of
-- small numbers takes several times its text's size.)
--
-- Upgrading validates the new CHECK on every live task, in one scan of live_task under its ACCESS EXCLUSIVE lock:
-- enqueues and claims wait for it. The scan reads each payload's header, not the payload.
ALTER TABLE tasktable.live_task
    DROP CONSTRAINT payload_size_limit,
    ADD CONSTRAINT payload_size_limit
        CHECK (pg_column_size(payload) <= 1048576 OR octet_length(payload::text) <= 1048576);
