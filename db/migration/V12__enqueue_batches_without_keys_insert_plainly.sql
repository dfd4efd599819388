-- tasktable 12: enqueue_tasks inserts a batch without dedup keys with one plain INSERT. Same signature, same
-- results, the ids in input order. Also: a spec lost to a concurrent commit of its dedup key is retried once, through
-- enqueue_task (which tries until it inserts or finds the key's task), not until no NULL is left (see the loop).
--
-- Every spec went through INSERT ... ON CONFLICT (speculative insertion, with a lock taken and released per row,
-- with or without a key; 3.5% of the server's CPU in a perf of bench enqueue), and two hash joins put the ids back
-- in input order and found deduplicated specs' live tasks. A batch in which no spec has a dedup key (the usual bulk
-- enqueue) can conflict with nothing: it is now a plain INSERT, and the ids drawn up front are the answer, in input
-- order. A batch with any dedup key takes V11's path, unchanged. pgbench, 4 clients, enqueue_tasks
-- of 1,000 specs without keys sent as text (-M simple, so the array is parsed on every call, as from a driver), V11
-- and this alternating on one database (session 8, 22:10 UTC), tasks/s:
--
--                       V11        this
--                       79,530     109,363
--                       87,132      97,447
--                       88,136     108,453
--
-- The defaults of NULL spec fields are written as in the other path. QueueContractTest runs both (ids in input order
-- without keys; keys shared within a batch), InterleavingTest their wake-ups.

-- enqueue_tasks: as V11, with the path above for batches without dedup keys.
CREATE OR REPLACE FUNCTION tasktable.enqueue_tasks(specs tasktable.task_spec[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
-- V9's settings, which CREATE OR REPLACE would otherwise drop.
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
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
               tasktable._task_spec_problem(s.kind, s.payload, s.priority, s.max_attempts, s.dedup_key,
                                            q.name IS NOT NULL) AS problem
        FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
        LEFT JOIN tasktable.queue q ON q.name = coalesce(s.queue, 'default')
    ) v
    WHERE v.problem IS NOT NULL
    ORDER BY v.ord
    LIMIT 1;

    IF FOUND THEN
        PERFORM tasktable._raise_task_spec_problem(bad.problem, bad.ord, bad.kind, bad.queue, bad.priority, bad.max_attempts);
    END IF;

    IF NOT EXISTS (SELECT FROM unnest(specs) AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key)
                   WHERE s.dedup_key IS NOT NULL) THEN
        -- No dedup key in the batch (the usual bulk enqueue): nothing can conflict, so every spec is inserted, by a
        -- plain INSERT, and the ids drawn up front are the answer as they are. (A BEFORE trigger on live_task that
        -- drops rows is not supported: their ids would be returned all the same.)
        WITH input AS MATERIALIZED (
            SELECT nextval(task_ids) AS id, s.ord,
                   s.kind, coalesce(s.payload, '{}') AS payload, coalesce(s.queue, 'default') AS queue,
                   coalesce(s.run_at, now()) AS run_at, coalesce(s.priority, 0) AS priority, s.max_attempts
            FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
        ), inserted AS (
            INSERT INTO tasktable.live_task (id, queue, kind, payload, run_at, priority, max_attempts)
            OVERRIDING SYSTEM VALUE
            SELECT i.id, i.queue, i.kind, i.payload, i.run_at, i.priority, i.max_attempts
            FROM input i
            ORDER BY i.ord
        )
        SELECT array_agg(i.id ORDER BY i.ord), array_agg(DISTINCT i.queue) FILTER (WHERE i.run_at <= now())
        INTO ids, wake
        FROM input i;
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
        INTO ids, wake
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
    -- 5,582 with no NOTIFY at all (docs/performance.md).
    PERFORM pg_notify('tasktable', q.name)
    FROM tasktable.queue q
    WHERE q.name = ANY (wake) AND NOT q.paused
      AND pg_try_advisory_xact_lock(1953787508, hashtext(q.name));

    RETURN ids;
END
$$;


