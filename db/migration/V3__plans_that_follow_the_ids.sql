-- tasktable 3: claim_tasks, complete_tasks, fail_tasks and extend_lease get plans that cannot go wrong with
-- the statistics. Same signatures, same behaviour; claim_tasks still returns its tasks highest priority first.
--
-- What went wrong (bench drain, one worker; EXPLAIN ANALYZE of one call of 500 on a table of 50,000 queued):
-- * claim_tasks joined the locked ids back to the table. Past about 200 ids the planner hashed the whole table
--   for that join: a seq scan of every row, 18-35 ms per claim of 500. Now the ids are an array, one task_pkey
--   probe each: 5 ms.
-- * complete_tasks, fail_tasks, extend_lease: ANALYZE usually sees no running task, so "lease_expires_at IS
--   NOT NULL" is estimated at one row. The planner then scanned the table once and rescanned the id array for
--   each row: 250,000 to 750,000 comparisons, 77-290 ms per completion of 500. Now they read only the given
--   ids (t.id = ANY (ids)) and never nest loops or scan the table (function-level SET, below): 5 ms.
-- pgbench, 2 clients, claim + complete of 50,000 tasks: claims of 500 went from 28,000-33,000 to
-- 50,000-62,000 tasks/s; claims of 100 stayed at 37,000-43,000 (those plans were already right).
-- A DBA can see the settings with \df+ and drop them with ALTER FUNCTION ... RESET ALL; EXPLAIN shows why not.

CREATE OR REPLACE FUNCTION tasktable.claim_tasks(
    n      integer,
    worker text,
    queues text[] DEFAULT NULL,
    lease  interval DEFAULT NULL
)
RETURNS SETOF tasktable.task
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    unknown   text;
    claimable text[];
BEGIN
    IF n IS NULL OR n NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'tasktable: claim size must be between 1 and 10000, got %', coalesce(n::text, 'NULL')
            USING ERRCODE = 'TT005', HINT = 'Claim what the worker has free capacity for, e.g. 10.';
    END IF;
    IF worker IS NULL OR length(worker) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'tasktable: worker name must be 1 to 255 characters'
            USING ERRCODE = 'TT006', HINT = 'Name the worker so operators can see who holds a task, e.g. host:pid.';
    END IF;
    IF lease IS NOT NULL AND lease NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'tasktable: lease must be between 1 second and 1 day, got %', lease
            USING ERRCODE = 'TT007', HINT = 'Leave it NULL to use the queue''s lease.';
    END IF;
    IF cardinality(queues) = 0 THEN
        RAISE EXCEPTION 'tasktable: queues must name at least one queue'
            USING ERRCODE = 'TT004', HINT = 'Pass NULL to claim from all queues.';
    END IF;
    IF queues IS NOT NULL THEN
        SELECT w.name INTO unknown
        FROM unnest(queues) AS w (name)
        WHERE w.name IS NULL OR NOT EXISTS (SELECT FROM tasktable.queue q WHERE q.name = w.name)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'tasktable: unknown queue %', coalesce(quote_literal(unknown), 'NULL')
                USING ERRCODE = 'TT004', HINT = 'Pass NULL for all queues, or names from tasktable.queue.';
        END IF;
    END IF;
    -- The queues to claim from, as a value: the claim below then reads "queue = ANY (claimable)", which the
    -- planner estimates well (a "queue <> ALL (paused queues)" was estimated at ~0 rows: 71 ms per claim).
    SELECT array_agg(q.name) INTO claimable
    FROM tasktable.queue q
    WHERE NOT q.paused AND (claim_tasks.queues IS NULL OR q.name = ANY (claim_tasks.queues));
    IF claimable IS NULL THEN
        RETURN;
    END IF;

    -- The ids to claim are locked first and passed as an array (an InitPlan), so the update finds each row by
    -- one task_pkey probe whatever the planner thinks of the join: joined as a CTE, they were hashed against a
    -- seq scan of the whole table once a claim exceeded about 200 (claim of 500: 18-35 ms, now 5 ms).
    RETURN QUERY
    WITH claimed AS (
        UPDATE tasktable.task t
        SET state = 'running',
            attempt = t.attempt + 1,
            worker = claim_tasks.worker,
            started_at = now(),
            lease_expires_at = now() + coalesce(claim_tasks.lease, q.lease)
        FROM tasktable.queue q
        WHERE t.id = ANY (ARRAY(
                  SELECT r.id
                  FROM tasktable.task r
                  WHERE r.state = 'queued'
                    AND r.run_at <= now()
                    AND r.queue = ANY (claimable)
                  ORDER BY r.priority DESC, r.run_at, r.id
                  LIMIT claim_tasks.n
                  FOR UPDATE OF r SKIP LOCKED))
          AND q.name = t.queue
        RETURNING t.*
    )
    SELECT * FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;


CREATE OR REPLACE FUNCTION tasktable.complete_tasks(ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off AS $$
DECLARE
    done bigint[];
BEGIN
    PERFORM tasktable._check_task_refs(ids, attempts);
    IF results IS NOT NULL AND (array_ndims(results) > 1 OR cardinality(results) <> cardinality(ids)) THEN
        RAISE EXCEPTION 'tasktable: results must be NULL or as long as ids'
            USING ERRCODE = 'TT008', HINT = 'Pass one result (or NULL) per task.';
    END IF;
    IF results IS NOT NULL AND EXISTS (SELECT FROM unnest(results) r WHERE octet_length(r::text) > 1048576) THEN
        RAISE EXCEPTION 'tasktable: task result exceeds 1 MB'
            USING ERRCODE = 'TT003', HINT = 'Store large results in a table and return its key.';
    END IF;

    -- Only the given ids are read (t.id = ANY (ids), an index scan: enable_seqscan is off), and joined to their
    -- attempts by hash or merge (enable_nestloop is off): whatever ANALYZE saw, a call costs one task_pkey
    -- probe per id. The estimate it works from is one row ("lease_expires_at IS NOT NULL" when ANALYZE saw no
    -- running task), on which the planner chose a seq scan with the id array rescanned per row: 290 ms for 500.
    WITH completed AS (
        UPDATE tasktable.task t
        SET state = 'succeeded',
            result = c.result,
            lease_expires_at = NULL,
            finished_at = now()
        FROM unnest(ids, attempts, results) AS c (id, attempt, result)
        WHERE t.id = ANY (complete_tasks.ids) AND t.id = c.id AND t.attempt = c.attempt
          AND t.lease_expires_at IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(completed.id), '{}') INTO done FROM completed;
    RETURN done;
END
$$;


CREATE OR REPLACE FUNCTION tasktable.fail_tasks(
    ids       bigint[],
    attempts  integer[],
    errors    text[],
    retryable boolean[] DEFAULT NULL,
    retry_at  timestamptz[] DEFAULT NULL
)
RETURNS TABLE (id bigint, state tasktable.task_state)
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off AS $$
BEGIN
    PERFORM tasktable._check_task_refs(ids, attempts);
    IF cardinality(errors) IS DISTINCT FROM cardinality(ids)
       OR cardinality(retryable) <> cardinality(ids) OR cardinality(retry_at) <> cardinality(ids) THEN
        RAISE EXCEPTION 'tasktable: errors (and retryable, retry_at when given) must be as long as ids'
            USING ERRCODE = 'TT008', HINT = 'Pass one error message per task.';
    END IF;

    -- index probes on the given ids only, never a nested loop: see complete_tasks
    RETURN QUERY
    WITH held AS (
        SELECT cur.id, f.error,
               (NOT coalesce(f.retryable, true) OR cur.attempt >= coalesce(cur.max_attempts, q.max_attempts)) AS dead,
               greatest(now(), coalesce(f.retry_at, now() + tasktable.retry_delay(cur.queue, cur.attempt))) AS next_run_at
        FROM unnest(ids, attempts, errors, retryable, retry_at) AS f (id, attempt, error, retryable, retry_at)
        JOIN tasktable.task cur ON cur.id = ANY (fail_tasks.ids) AND cur.id = f.id AND cur.attempt = f.attempt
                               AND cur.lease_expires_at IS NOT NULL
        JOIN tasktable.queue q ON q.name = cur.queue
        FOR UPDATE OF cur
    )
    UPDATE tasktable.task t
    SET state = CASE WHEN held.dead THEN 'dead' ELSE 'queued' END::tasktable.task_state,
        run_at = CASE WHEN held.dead THEN t.run_at ELSE held.next_run_at END,
        finished_at = CASE WHEN held.dead THEN now() END,
        lease_expires_at = NULL,
        last_error = left(coalesce(held.error, 'unknown error'), 10000)
    FROM held
    WHERE t.id = ANY (fail_tasks.ids) AND t.id = held.id AND t.lease_expires_at IS NOT NULL
    RETURNING t.id, t.state;
END
$$;


CREATE OR REPLACE FUNCTION tasktable.extend_lease(ids bigint[], attempts integer[], by interval DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off AS $$
DECLARE
    extended bigint[];
BEGIN
    PERFORM tasktable._check_task_refs(ids, attempts);
    IF by IS NOT NULL AND by NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'tasktable: lease extension must be between 1 second and 1 day, got %', by
            USING ERRCODE = 'TT007', HINT = 'Leave it NULL to extend by the queue''s lease.';
    END IF;

    -- index probes on the given ids only, never a nested loop: see complete_tasks
    WITH renewed AS (
        UPDATE tasktable.task t
        -- clock_timestamp(), not now(): a heartbeat that waited on a row lock longer than the lease would
        -- otherwise set a lease that had already run out, report success, and be rescued anyway.
        SET lease_expires_at = clock_timestamp() + coalesce(extend_lease.by, q.lease)
        FROM unnest(ids, attempts) AS h (id, attempt), tasktable.queue q
        WHERE t.id = ANY (extend_lease.ids) AND t.id = h.id AND t.attempt = h.attempt AND t.lease_expires_at IS NOT NULL
          AND q.name = t.queue
        RETURNING t.id
    )
    SELECT coalesce(array_agg(renewed.id), '{}') INTO extended FROM renewed;
    RETURN extended;
END
$$;

