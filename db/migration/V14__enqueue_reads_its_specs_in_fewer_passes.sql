-- tasktable 14: enqueue_tasks reads its specs in fewer passes. Same signature, same results, same errors.
--
-- V12's call of 1,000 specs without keys, timed statement by statement (auto_explain, session 9): the array was
-- unnested five times (the queues to hold, the checks, "any dedup key?", the insert, the ids), and the checks looked
-- each spec's queue up in tasktable.queue, an index probe per spec (2.7 ms of the call's 20, with timing). Now:
--   - one pass collects the queues named, whether any spec has a dedup key, and the queues that get a due task;
--   - the queues are held and looked up once (known, and which are not paused);
--   - the checks test each spec's queue against that list (a few names), not the table;
--   - a batch without keys draws its ids into an array and inserts; nothing is aggregated afterwards;
--   - the wake-up list is made in PL/pgSQL, so the NOTIFY statement's only condition is the election's lock.
-- pgbench, one client, enqueue_tasks of 1,000 specs without keys sent as text (-M simple), V13 and this on two
-- databases, alternating (session 9, 23:25 UTC), average latency per call:
--
--                       V13        this
--                       19.5 ms    17.2 ms
--                       17.7 ms    16.6 ms
--                       20.4 ms    16.8 ms
--                       18.4 ms    16.3 ms
--
-- The insert itself (a heap row, two index entries and their WAL per task) is now 7.4 ms of the 12.9 ms a call takes
-- without auto_explain's timing. A batch with dedup keys inserts as in V12.

-- enqueue_tasks: as V12, its specs read in fewer passes (see above).
CREATE OR REPLACE FUNCTION tasktable.enqueue_tasks(specs tasktable.task_spec[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
-- V9's settings, which CREATE OR REPLACE would otherwise drop.
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
DECLARE
    -- The id sequence, looked up once: nextval(pg_get_serial_sequence(...)) looked it up for every task,
    -- 4.5 ms of a 1,000-task call (0.7 ms with the lookup done once; pgbench, one client).
    task_ids regclass := pg_get_serial_sequence('tasktable.live_task', 'id')::regclass;
    named  text[];   -- the queues the specs name (NULL: 'default')
    keyed  boolean;  -- some spec has a dedup key
    due    text[];   -- the queues that get a task due now
    known  text[];   -- the named queues that exist
    awake  text[];   -- ... and are not paused
    wake   text[];
    bad    record;
    ids    bigint[];
    lost   integer;
BEGIN
    IF specs IS NULL OR cardinality(specs) = 0 THEN
        RETURN '{}';
    END IF;
    IF array_ndims(specs) > 1 THEN
        RAISE EXCEPTION 'tasktable: specs must be a one-dimensional array'
            USING ERRCODE = 'TT008', HINT = 'Pass ARRAY[ROW(...)::tasktable.task_spec, ...].';
    END IF;

    SELECT array_agg(DISTINCT coalesce(s.queue, 'default')), bool_or(s.dedup_key IS NOT NULL),
           array_agg(DISTINCT coalesce(s.queue, 'default')) FILTER (WHERE s.run_at IS NULL OR s.run_at <= now())
    INTO named, keyed, due
    FROM unnest(specs) AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key);

    -- The queues named are held as live_task's foreign key held them, but once per call rather than once per task
    -- (see _hold_queues); then they are looked up.
    PERFORM tasktable._hold_queues(named);
    SELECT coalesce(array_agg(q.name), '{}'), coalesce(array_agg(q.name) FILTER (WHERE NOT q.paused), '{}')
    INTO known, awake
    FROM tasktable.queue q
    WHERE q.name = ANY (named);

    SELECT s.ord, s.kind, s.queue, s.priority, s.max_attempts,
           tasktable._task_spec_problem(s.kind, s.payload, s.priority, s.max_attempts, s.dedup_key,
                                        coalesce(s.queue, 'default') = ANY (known)) AS problem
    INTO bad
    FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
    WHERE tasktable._task_spec_problem(s.kind, s.payload, s.priority, s.max_attempts, s.dedup_key,
                                       coalesce(s.queue, 'default') = ANY (known)) IS NOT NULL
    ORDER BY s.ord
    LIMIT 1;
    IF FOUND THEN
        PERFORM tasktable._raise_task_spec_problem(bad.problem, bad.ord, bad.kind, bad.queue, bad.priority, bad.max_attempts);
    END IF;

    IF NOT keyed THEN
        -- No dedup key in the batch (the usual bulk enqueue): nothing can conflict, so every spec is inserted, by a
        -- plain INSERT, and the ids drawn up front, one per spec in input order, are the answer as they are. (A
        -- BEFORE trigger on live_task that drops rows is not supported: their ids would be returned all the same.)
        ids := ARRAY(SELECT nextval(task_ids) FROM generate_series(1, cardinality(specs)));
        INSERT INTO tasktable.live_task (id, queue, kind, payload, run_at, priority, max_attempts)
        OVERRIDING SYSTEM VALUE
        SELECT ids[s.ord], coalesce(s.queue, 'default'), s.kind, coalesce(s.payload, '{}'), coalesce(s.run_at, now()),
               coalesce(s.priority, 0), s.max_attempts
        FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
        ORDER BY s.ord; -- in id order, so the heap is too
    ELSE
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
        INTO ids, due
        FROM input i
        LEFT JOIN inserted mine ON mine.id = i.id
        -- an earlier spec of this same batch with the same key
        LEFT JOIN inserted twin ON mine.id IS NULL AND twin.queue = i.queue AND twin.dedup_key = i.dedup_key;
    END IF;

    -- A NULL is left only when a concurrent transaction committed the same key after this statement
    -- started, or the live task holding it finished meanwhile. enqueue_task inserts or finds it, each try with a new
    -- snapshot (READ COMMITTED); once per position, so that a row a trigger dropped (enqueue_task's NULL) is not
    -- retried forever, as it was before V12.
    FOR lost IN SELECT x.ord FROM unnest(ids) WITH ORDINALITY AS x (id, ord) WHERE x.id IS NULL LOOP
        ids[lost] := tasktable.enqueue_task((specs[lost]).kind, (specs[lost]).payload, (specs[lost]).queue,
                                            (specs[lost]).run_at, (specs[lost]).priority,
                                            (specs[lost]).max_attempts, (specs[lost]).dedup_key);
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
    -- 5,582 with no NOTIFY at all (docs/performance.md). The list is made first, so that the lock is the
    -- statement's only condition: the planner orders a statement's conditions by their cost, not as written.
    wake := ARRAY(SELECT w.name FROM unnest(due) AS w (name) WHERE w.name = ANY (awake));
    PERFORM pg_notify('tasktable', w.name)
    FROM unnest(wake) AS w (name)
    WHERE pg_try_advisory_xact_lock(1953787508, hashtext(w.name));

    RETURN ids;
END
$$;
