-- tasktable 15: the claim and the completion do less work per task. Same signatures, same results, same errors.
--
-- Counted with callgrind by docs/instructions.sh (instructions of the backend serving one pgbench client,
-- claim_tasks of 128 then complete_tasks, 30 transactions on a fresh copy of the same database each time; the same
-- count on every rerun, where timings on a shared machine move by a third), per task: V14 139,535; the floor's
-- claim and DELETE 57,079. Each change below on its own, against V14:
--   - claim_tasks finds the rows it locked by their physical address (ctid) instead of by id: 134,200 (-3.8%): no
--     task_pkey probe per task, and no sort of the ids for the index scan;
--   - task_moves_to_a_known_queue fires AFTER the update instead of BEFORE it: 138,930 (-0.4%). A BEFORE ROW
--     UPDATE trigger makes every UPDATE of live_task (each claim, each heartbeat) fetch and lock the old row
--     again before the trigger's column list and WHEN clause are even looked at, though the functions never
--     change a task's queue; an AFTER trigger looks at them with the rows in hand. It refuses the same updates,
--     with the same error, before the statement ends;
--   - complete_tasks returns the ids from its DELETE instead of a RETURNING of its INSERT: 138,797 (-0.5%);
--   - _check_task_refs tests the attempts with array expressions instead of a query over unnest(attempts):
--     138,350 (-0.8%); it runs in every batch function that takes (ids, attempts);
--   - complete_tasks's DELETE returns the 13 columns its INSERT copies instead of all 17: 137,336 (-1.6%); a
--     data-modifying CTE keeps every row it returns in a tuplestore, read back by the INSERT.
-- All five: 130,655 (-6.4%; docs/performance.md, item 41). The claimed rows still come back sorted by priority, run_at
-- and id, as the API promises: unsorted they counted about 4,700 fewer per task, but that order is the contract.

-- claim_tasks: as V5, the claimed rows found by address (see above).
CREATE OR REPLACE FUNCTION tasktable.claim_tasks(
    n      integer,
    worker text,
    queues text[] DEFAULT NULL,
    lease  interval DEFAULT NULL
)
RETURNS SETOF tasktable.task
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET jit = off AS $$
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

    -- The rows to claim are locked first and passed as an array of their physical addresses (an InitPlan), so
    -- the update reads each row straight from its heap page (a TID scan) whatever the planner thinks of the join:
    -- joined as a CTE, the ids were hashed against a seq scan of the whole table once a claim exceeded about 200
    -- (claim of 500: 18-35 ms), and passed as ids each cost a task_pkey probe (V5 to V14). A row locked here keeps
    -- its address until this transaction ends. One whose lock was taken on a version newer than this statement's
    -- snapshot (a concurrent update committed in between) is not visible to the TID scan: it stays queued,
    -- unclaimed, for the next claim.
    RETURN QUERY
    WITH claimed AS (
        UPDATE tasktable.live_task t
        SET state = 'running',
            attempt = t.attempt + 1,
            worker = claim_tasks.worker,
            started_at = now(),
            lease_expires_at = now() + coalesce(claim_tasks.lease, q.lease)
        FROM tasktable.queue q
        WHERE t.ctid = ANY (ARRAY(
                  SELECT r.ctid
                  FROM tasktable.live_task r
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


-- complete_tasks: as V6, the ids returned from the DELETE (see above).
CREATE OR REPLACE FUNCTION tasktable.complete_tasks(ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off AS $$
DECLARE
    done   bigint[];
    -- queues that keep no succeeded task, read at each call: an UPDATE of retention applies to the next call
    unkept text[];
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
    SELECT coalesce(array_agg(q.name), '{}') INTO unkept FROM tasktable.queue q WHERE q.retention = interval '0';

    -- Only the given ids are read (t.id = ANY (ids), an index scan: enable_seqscan is off), and joined to their
    -- attempts by hash or merge (enable_nestloop is off): whatever ANALYZE saw, a call costs one task_pkey
    -- probe per id. The estimate it works from is one row ("lease_expires_at IS NOT NULL" when ANALYZE saw no
    -- running task), on which the planner chose a seq scan with the id array rescanned per row: 290 ms for 500.
    IF unkept <> '{}' THEN
        -- A statement of its own: one statement that moved some tasks and deleted others took 4.9-6.5 ms for 500
        -- tasks of an unkept queue, against 3.6-4.1 for this DELETE (pgbench, as above, alternating).
        WITH completed AS (
            DELETE FROM tasktable.live_task t
            USING unnest(ids, attempts) AS c (id, attempt)
            WHERE t.id = ANY (complete_tasks.ids) AND t.id = c.id AND t.attempt = c.attempt
              AND t.lease_expires_at IS NOT NULL AND t.queue = ANY (unkept)
            RETURNING t.id
        )
        SELECT array_agg(completed.id) INTO done FROM completed;
        IF cardinality(done) = cardinality(ids) THEN
            RETURN done; -- every task was in an unkept queue: nothing left to move
        END IF;
    END IF;

    WITH completed AS (
        DELETE FROM tasktable.live_task t
        USING unnest(ids, attempts, results) AS c (id, attempt, result)
        WHERE t.id = ANY (complete_tasks.ids) AND t.id = c.id AND t.attempt = c.attempt
          AND t.lease_expires_at IS NOT NULL
        -- the columns the INSERT copies, not t.*: the CTE holds every row it returns (see above)
        RETURNING t.id, t.queue, t.kind, t.payload, t.priority, t.run_at, t.attempt, t.max_attempts, t.dedup_key,
                  t.worker, t.last_error, t.created_at, t.started_at, c.result AS new_result
    ), moved AS (
        INSERT INTO tasktable.finished_task (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                                             dedup_key, worker, lease_expires_at, last_error, result, created_at,
                                             started_at, finished_at)
        SELECT m.id, m.queue, m.kind, m.payload, 'succeeded', m.priority, m.run_at, m.attempt, m.max_attempts,
               m.dedup_key, m.worker, NULL, m.last_error, m.new_result, m.created_at, m.started_at, now()
        FROM completed m
    )
    -- the ids from the DELETE: the INSERT moves every row it returns (or the statement fails), and a RETURNING
    -- of its own would fill a second tuplestore for the same ids
    SELECT coalesce(done || array_agg(completed.id), '{}') INTO done FROM completed;
    RETURN done;
END
$$;


-- task_moves_to_a_known_queue: as V7, after the update (see above).
DROP TRIGGER task_moves_to_a_known_queue ON tasktable.live_task;
CREATE TRIGGER task_moves_to_a_known_queue AFTER UPDATE OF queue ON tasktable.live_task
    FOR EACH ROW WHEN (OLD.queue IS DISTINCT FROM NEW.queue) EXECUTE FUNCTION tasktable._check_task_queue();


-- _check_task_refs: as V1, the attempts tested without a query (see above).
CREATE OR REPLACE FUNCTION tasktable._check_task_refs(ids bigint[], attempts integer[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ids IS NULL OR attempts IS NULL OR array_ndims(ids) > 1 OR array_ndims(attempts) > 1
       OR cardinality(ids) <> cardinality(attempts) OR array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tasktable: ids and attempts must be non-null arrays of equal length'
            USING ERRCODE = 'TT008', HINT = 'Pass one-dimensional arrays: each task''s id with the attempt number claim_tasks returned for it.';
    END IF;
    -- NULLs first: "1 > ANY" is NULL, not true, for an array holding a NULL and nothing under 1
    IF array_position(attempts, NULL) IS NOT NULL OR 1 > ANY (attempts) THEN
        RAISE EXCEPTION 'tasktable: attempt numbers must be 1 or more'
            USING ERRCODE = 'TT009', HINT = 'Pass the attempt number claim_tasks returned with the task.';
    END IF;
END
$$;
