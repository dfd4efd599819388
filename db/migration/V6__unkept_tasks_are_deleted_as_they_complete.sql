-- tasktable 6: a queue that keeps no succeeded tasks deletes them as they complete.
--
-- retention = 0 has always meant "prune_tasks deletes the queue's succeeded tasks at its next call". complete_tasks
-- now deletes such a task from live_task and writes nothing to finished_task, instead of moving it there for
-- prune_tasks to delete a few minutes later. What a caller sees is the same, only sooner: complete_tasks returns the
-- task's id, and the task is gone. Queues with a retention (7 days by default) work as in V5.
--
-- Why: the move is most of what a completion costs. pgbench, 2 clients, claim_tasks + complete_tasks of 500 per
-- transaction, 300,000 queued tasks, three alternating pairs, ms per complete_tasks call: retention 7 days
-- 7.30 / 7.31 / 6.55, retention 0 3.81 / 3.64 / 5.45 (the floor's bare DELETE of 500: 3.9). A queue that needs no
-- history (no finished task to look up by id, no throughput figures) drains faster with retention = 0: bench drain,
-- claims of 500, 55,000-58,000 -> 72,000 tasks/s (docs/performance.md, item 22).
--
-- Cancelled tasks (retention) and dead tasks (dead_retention) still move to finished_task, and prune_tasks deletes
-- them at its next call when their retention is 0: they are rare, and a dead task is kept for inspection.

-- complete_tasks: as V5, except for the queues whose retention is 0.
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
        RETURNING t.*, c.result AS new_result
    ), moved AS (
        INSERT INTO tasktable.finished_task (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                                             dedup_key, worker, lease_expires_at, last_error, result, created_at,
                                             started_at, finished_at)
        SELECT m.id, m.queue, m.kind, m.payload, 'succeeded', m.priority, m.run_at, m.attempt, m.max_attempts,
               m.dedup_key, m.worker, NULL, m.last_error, m.new_result, m.created_at, m.started_at, now()
        FROM completed m
        RETURNING finished_task.id
    )
    SELECT coalesce(done || array_agg(moved.id), '{}') INTO done FROM moved;
    RETURN done;
END
$$;
