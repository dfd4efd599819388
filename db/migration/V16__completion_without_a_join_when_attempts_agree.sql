-- tasktable 16: complete_tasks joins nothing when every task of the call is at the same attempt and gets no result.
-- Same signature, results and errors.
--
-- complete_tasks fences each task by its attempt: a task completes only if it is still running under the attempt
-- given for it. Until V15 that was a hash join of live_task with unnest(ids, attempts, results), whatever the call.
-- Most calls are simpler: a worker reports the first attempts of the tasks it claimed, and many handlers return no
-- result (the Java worker passes an array of NULLs then). When every attempt of the call is the same number and no
-- result is given, "t.attempt = attempts[1]" says the same as the join, and nothing else is needed from the arrays.
-- Calls with mixed attempts (a retry among first attempts) or with results take the join as before.
--
-- Counted by docs/instructions.sh (claim_tasks of 128, then complete_tasks of all of them at attempt 1, no result;
-- docs/performance.md, item 44), per task: V15 130,655, V16 125,239 (-4.1%); with an array of NULL results, as the
-- Java worker passes it, 132,532 -> 126,311 (-4.7%); with results (the join as before) 134,971 -> 135,212 (+0.2%, the
-- test that picks the path). The floor's claim and DELETE: 57,079.
-- A plain DELETE of the same rows (no join, no copy kept) explains it: the completion's join, its unnest of three
-- arrays and the result it carries cost about 5,400 instructions per task, 12% of all complete_tasks does beyond
-- a plain DELETE.

CREATE OR REPLACE FUNCTION tasktable.complete_tasks(ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off AS $$
DECLARE
    done   bigint[];
    -- queues that keep no succeeded task, read at each call: an UPDATE of retention applies to the next call
    unkept text[];
    -- every task of the call at one attempt and none given a result: the attempt is checked by a comparison and
    -- nothing is joined (see the header)
    plain  boolean;
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
    plain := attempts[1] = ALL (attempts) AND (results IS NULL OR num_nonnulls(VARIADIC results) = 0);

    -- Only the given ids are read (t.id = ANY (ids), an index scan: enable_seqscan is off), and joined to their
    -- attempts by hash or merge (enable_nestloop is off): whatever ANALYZE saw, a call costs one task_pkey
    -- probe per id. The estimate it works from is one row ("lease_expires_at IS NOT NULL" when ANALYZE saw no
    -- running task), on which the planner chose a seq scan with the id array rescanned per row: 290 ms for 500.
    IF unkept <> '{}' THEN
        -- A statement of its own: one statement that moved some tasks and deleted others took 4.9-6.5 ms for 500
        -- tasks of an unkept queue, against 3.6-4.1 for this DELETE (pgbench, V6).
        IF plain THEN
            WITH completed AS (
                DELETE FROM tasktable.live_task t
                WHERE t.id = ANY (complete_tasks.ids) AND t.attempt = complete_tasks.attempts[1]
                  AND t.lease_expires_at IS NOT NULL AND t.queue = ANY (unkept)
                RETURNING t.id
            )
            SELECT array_agg(completed.id) INTO done FROM completed;
        ELSE
            WITH completed AS (
                DELETE FROM tasktable.live_task t
                USING unnest(ids, attempts) AS c (id, attempt)
                WHERE t.id = ANY (complete_tasks.ids) AND t.id = c.id AND t.attempt = c.attempt
                  AND t.lease_expires_at IS NOT NULL AND t.queue = ANY (unkept)
                RETURNING t.id
            )
            SELECT array_agg(completed.id) INTO done FROM completed;
        END IF;
        IF cardinality(done) = cardinality(ids) THEN
            RETURN done; -- every task was in an unkept queue: nothing left to move
        END IF;
    END IF;

    IF plain THEN
        -- as below, with the attempt compared to the one given for all and no result to carry
        WITH completed AS (
            DELETE FROM tasktable.live_task t
            WHERE t.id = ANY (complete_tasks.ids) AND t.attempt = complete_tasks.attempts[1]
              AND t.lease_expires_at IS NOT NULL
            RETURNING t.id, t.queue, t.kind, t.payload, t.priority, t.run_at, t.attempt, t.max_attempts, t.dedup_key,
                      t.worker, t.last_error, t.created_at, t.started_at
        ), moved AS (
            INSERT INTO tasktable.finished_task (id, queue, kind, payload, state, priority, run_at, attempt,
                                                 max_attempts, dedup_key, worker, lease_expires_at, last_error, result,
                                                 created_at, started_at, finished_at)
            SELECT m.id, m.queue, m.kind, m.payload, 'succeeded', m.priority, m.run_at, m.attempt, m.max_attempts,
                   m.dedup_key, m.worker, NULL, m.last_error, NULL, m.created_at, m.started_at, now()
            FROM completed m
        )
        SELECT coalesce(done || array_agg(completed.id), '{}') INTO done FROM completed;
        RETURN done;
    END IF;

    WITH completed AS (
        DELETE FROM tasktable.live_task t
        USING unnest(ids, attempts, results) AS c (id, attempt, result)
        WHERE t.id = ANY (complete_tasks.ids) AND t.id = c.id AND t.attempt = c.attempt
          AND t.lease_expires_at IS NOT NULL
        -- the columns the INSERT copies, not t.*: the CTE holds every row it returns (V15)
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
    -- of its own would fill a second tuplestore for the same ids (V15)
    SELECT coalesce(done || array_agg(completed.id), '{}') INTO done FROM completed;
    RETURN done;
END
$$;
