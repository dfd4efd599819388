-- tasktable 7: enqueue checks its queues once per call, not once per task.
--
-- live_task.queue loses its foreign key to queue. A foreign key's check is a query per inserted row (V5 dropped the
-- one on finished_task for the same reason): enqueue_tasks of 1,000 tasks from 4 pgbench clients took 29.4-31.5 ms
-- per call with it (V6), 24.2-28.7 ms with this migration (docs/performance.md, item 23).
-- What it promised is kept by the functions and triggers:
--   - enqueue_tasks already refuses an unknown queue (TT004); it now also locks the queues it names, once per call
--     and as the foreign key did per task (FOR KEY SHARE, through the SECURITY DEFINER _hold_queues), so that none
--     can be deleted or renamed under its new tasks;
--   - the triggers on queue (V5's, renamed queue_keeps_its_tasks) refuse to delete or rename a queue that queued or
--     running tasks still name, as they did for finished ones (23503);
--   - a new trigger refuses to move a live task to a queue that does not exist (23503), for a DBA's UPDATE.
-- An INSERT into live_task that bypasses enqueue_tasks is no longer checked: tasks are created by enqueue_tasks.

ALTER TABLE tasktable.live_task DROP CONSTRAINT task_queue_fkey;

CREATE OR REPLACE FUNCTION tasktable._check_queue_unused()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- An enqueue_tasks in flight into this queue holds its row (FOR KEY SHARE, _hold_queues): the DELETE or UPDATE
    -- that fired this trigger waited for it, so the queries below, each with a snapshot of its own, see its tasks.
    -- Both tables: a task moving between them (one statement) is in one or the other in any snapshot.
    IF EXISTS (SELECT FROM tasktable.live_task t WHERE t.queue = OLD.name) THEN
        RAISE EXCEPTION 'tasktable: queue % still has queued or running tasks', quote_literal(OLD.name)
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Pause it (UPDATE tasktable.queue SET paused = true ...) and let its tasks finish, or cancel them with tasktable.cancel_task.';
    END IF;
    IF EXISTS (SELECT FROM tasktable.finished_task t WHERE t.queue = OLD.name) THEN
        RAISE EXCEPTION 'tasktable: queue % still has finished tasks', quote_literal(OLD.name)
            USING ERRCODE = 'foreign_key_violation',
                  HINT = format('prune_tasks removes them after the queue''s retention; or DELETE FROM tasktable.finished_task WHERE queue = %L;', OLD.name);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tasktable._check_queue_unused() IS 'Internal: refuses to delete or rename a queue that tasks still name.';
ALTER TRIGGER queue_keeps_its_finished_tasks ON tasktable.queue RENAME TO queue_keeps_its_tasks;
ALTER TRIGGER queue_keeps_its_finished_tasks_on_rename ON tasktable.queue RENAME TO queue_keeps_its_tasks_on_rename;

-- A DBA may move live tasks to another queue with an UPDATE; only to one that exists. The functions never change a
-- task's queue, so this trigger never fires on their path.
CREATE FUNCTION tasktable._check_task_queue()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM tasktable.queue q WHERE q.name = NEW.queue FOR KEY SHARE OF q;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tasktable: unknown queue %', quote_literal(NEW.queue)
            USING ERRCODE = 'foreign_key_violation',
                  HINT = format('Create it first: INSERT INTO tasktable.queue (name) VALUES (%L);', NEW.queue);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tasktable._check_task_queue() IS 'Internal: refuses to move a live task to a queue that does not exist.';
CREATE TRIGGER task_moves_to_a_known_queue BEFORE UPDATE OF queue ON tasktable.live_task
    FOR EACH ROW WHEN (OLD.queue IS DISTINCT FROM NEW.queue) EXECUTE FUNCTION tasktable._check_task_queue();


-- _hold_queues: locks the named queues' rows FOR KEY SHARE until the transaction ends, as a foreign key's check
-- does: a pause or any other policy UPDATE goes on; a DELETE or rename waits for the caller's transaction (and
-- queue_keeps_its_tasks then sees its tasks); a queue deleted meanwhile is skipped (READ COMMITTED: enqueue_tasks
-- then finds no queue, TT004) or fails the caller's transaction (REPEATABLE READ and SERIALIZABLE: 40001, as a
-- foreign key would). SECURITY DEFINER: a row lock needs UPDATE on queue, which a producer does not have.
CREATE FUNCTION tasktable._hold_queues(names text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM FROM tasktable.queue q WHERE q.name = ANY (names) ORDER BY q.name FOR KEY SHARE OF q;
END
$$;
COMMENT ON FUNCTION tasktable._hold_queues(text[]) IS 'Internal: holds queues against DELETE and rename until the transaction ends (enqueue_tasks).';


-- enqueue_tasks: as V5, holding the queues it names.
CREATE OR REPLACE FUNCTION tasktable.enqueue_tasks(specs tasktable.task_spec[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- The id sequence, looked up once: nextval(pg_get_serial_sequence(...)) looked it up for every task,
    -- 4.5 ms of a 1,000-task call (0.7 ms with the lookup done once; pgbench, one client).
    task_ids regclass := pg_get_serial_sequence('tasktable.live_task', 'id')::regclass;
    bad    record;
    ids    bigint[];
    lost   integer;
    wake   text[];
BEGIN
    IF specs IS NULL OR cardinality(specs) = 0 THEN
        RETURN '{}';
    END IF;
    IF array_ndims(specs) > 1 THEN
        RAISE EXCEPTION 'tasktable: specs must be a one-dimensional array'
            USING ERRCODE = 'TT008', HINT = 'Pass ARRAY[ROW(...)::tasktable.task_spec, ...].';
    END IF;

    -- The queues named are held as live_task's foreign key held them, but once per call rather than once per task
    -- (see _hold_queues); then they are looked up.
    PERFORM tasktable._hold_queues(ARRAY(
        SELECT DISTINCT coalesce(s.queue, 'default')
        FROM unnest(specs) AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key)));

    SELECT v.* INTO bad FROM (
        SELECT s.ord, s.kind, s.queue, s.priority, s.max_attempts,
               CASE
                   WHEN s.kind IS NULL OR length(s.kind) NOT BETWEEN 1 AND 255 THEN 'kind'
                   WHEN s.payload IS NOT NULL AND jsonb_typeof(s.payload) NOT IN ('object', 'array') THEN 'payload'
                   WHEN s.payload IS NOT NULL AND octet_length(s.payload::text) > 1048576 THEN 'size'
                   WHEN s.priority NOT BETWEEN -1000 AND 1000 THEN 'priority'
                   WHEN s.max_attempts NOT BETWEEN 1 AND 1000 THEN 'max_attempts'
                   WHEN length(s.dedup_key) NOT BETWEEN 1 AND 255 THEN 'dedup_key'
                   WHEN q.name IS NULL THEN 'queue'
               END AS problem
        FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
        LEFT JOIN tasktable.queue q ON q.name = coalesce(s.queue, 'default')
    ) v
    WHERE v.problem IS NOT NULL
    ORDER BY v.ord
    LIMIT 1;

    IF FOUND THEN
        CASE bad.problem
        WHEN 'kind' THEN
            RAISE EXCEPTION 'tasktable: task kind must be 1 to 255 characters, got %', coalesce(quote_literal(bad.kind), 'NULL')
                USING ERRCODE = 'TT001', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'The kind names the handler that runs the task, e.g. ''send_email''.';
        WHEN 'payload' THEN
            RAISE EXCEPTION 'tasktable: task payload must be a JSON object or array'
                USING ERRCODE = 'TT002', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'Wrap scalars in an object, e.g. {"value": 42}.';
        WHEN 'size' THEN
            RAISE EXCEPTION 'tasktable: task payload exceeds 1 MB'
                USING ERRCODE = 'TT003', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'Store large data in a table and put its key in the payload.';
        WHEN 'priority' THEN
            RAISE EXCEPTION 'tasktable: priority must be between -1000 and 1000, got %', bad.priority
                USING ERRCODE = 'TT012', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'Higher priorities run first; 0 is the default.';
        WHEN 'max_attempts' THEN
            RAISE EXCEPTION 'tasktable: max_attempts must be between 1 and 1000, got %', bad.max_attempts
                USING ERRCODE = 'TT012', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'Leave it NULL to follow the queue''s max_attempts.';
        WHEN 'dedup_key' THEN
            RAISE EXCEPTION 'tasktable: dedup_key must be 1 to 255 characters'
                USING ERRCODE = 'TT012', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = 'Leave it NULL for no deduplication.';
        ELSE
            RAISE EXCEPTION 'tasktable: unknown queue %', quote_literal(coalesce(bad.queue, 'default'))
                USING ERRCODE = 'TT004', DETAIL = format('task %s of the batch', bad.ord),
                      HINT = format('Create it first: INSERT INTO tasktable.queue (name) VALUES (%L);', coalesce(bad.queue, 'default'));
        END CASE;
    END IF;

    -- Ids are drawn up front so the result can be ordered like the input, whatever the insert skips.
    WITH input AS MATERIALIZED (
        SELECT nextval(task_ids) AS id, s.ord,
               s.kind, coalesce(s.payload, '{}') AS payload, coalesce(s.queue, 'default') AS queue,
               coalesce(s.run_at, now()) AS run_at, coalesce(s.priority, 0) AS priority,
               s.max_attempts, s.dedup_key
        FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
    ), inserted AS (
        INSERT INTO tasktable.live_task (id, queue, kind, payload, run_at, priority, max_attempts, dedup_key)
        OVERRIDING SYSTEM VALUE
        SELECT i.id, i.queue, i.kind, i.payload, i.run_at, i.priority, i.max_attempts, i.dedup_key
        FROM input i
        ORDER BY i.ord
        ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
        RETURNING id, queue, dedup_key
    )
    SELECT array_agg(coalesce(mine.id, twin.id,
                              -- a live task that existed before this statement: looked up only for a spec with
                              -- a dedup_key that was not inserted. As a LEFT JOIN this lookup was planned as a
                              -- seq scan of the whole table whenever statistics saw it empty (after a TRUNCATE,
                              -- or a new install): every enqueue then read every task (bench enqueue, 8 threads:
                              -- 1,399 tasks/s, each call 4.9 ms at p50).
                              CASE WHEN i.dedup_key IS NOT NULL THEN
                                  (SELECT live.id FROM tasktable.live_task live
                                   WHERE live.queue = i.queue AND live.dedup_key = i.dedup_key
                                     AND live.state IN ('queued', 'running'))
                              END) ORDER BY i.ord),
           array_agg(DISTINCT i.queue) FILTER (WHERE mine.id IS NOT NULL AND i.run_at <= now())
    INTO ids, wake
    FROM input i
    LEFT JOIN inserted mine ON mine.id = i.id
    -- an earlier spec of this same batch with the same key
    LEFT JOIN inserted twin ON mine.id IS NULL AND twin.queue = i.queue AND twin.dedup_key = i.dedup_key;

    -- A NULL is left only when a concurrent transaction committed the same key after this statement
    -- started. Each retry runs with a new snapshot (READ COMMITTED), so it finds that task or inserts.
    lost := array_position(ids, NULL);
    WHILE lost IS NOT NULL LOOP
        ids[lost] := (tasktable.enqueue_tasks(ARRAY[specs[lost]]))[1];
        lost := array_position(ids, NULL);
    END LOOP;

    -- Only queues that got a due task and are not paused: a NOTIFY makes the commit take a global lock,
    -- held through the commit's WAL flush, so notifying transactions commit one at a time (no group commit).
    -- One notifier per queue at a time is enough: a transaction-scoped advisory lock (class 1953787508,
    -- 'ttnt', keyed by the queue name) elects it; a transaction that finds it taken leaves the wake-up to the
    -- holder, whose NOTIFY arrives when it commits. Workers claim again after any claim that found tasks,
    -- which picks up a task committed just after that wake-up; in the rare worst case (the holder is a long
    -- transaction, or rolls back) a task waits for the workers' poll (1 s by default). The lock needs no
    -- privilege and never blocks: an UPDATE of the queue's policy does not wait for producers.
    -- enqueue_task from 8 pgbench clients: 1,248 tps with a NOTIFY per transaction, 3,625 with this election,
    -- 5,582 with no NOTIFY at all (docs/performance.md).
    PERFORM pg_notify('tasktable', q.name)
    FROM tasktable.queue q
    WHERE q.name = ANY (wake) AND NOT q.paused
      AND pg_try_advisory_xact_lock(1953787508, hashtext(q.name));

    RETURN ids;
END
$$;
