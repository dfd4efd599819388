-- tasktable 5: a finished task leaves the hot table. Same functions, same signatures, same behaviour.
--
-- tasktable.live_task      queued and running tasks: what claim_tasks, complete_tasks, fail_tasks, extend_lease,
--                          snooze_task and rescue_expired_tasks read and write, with the claim's partial indexes;
-- tasktable.finished_task  succeeded, dead and cancelled tasks, until prune_tasks deletes them (or retry_task
--                          moves a dead or cancelled one back);
-- tasktable.task           a view of both (UNION ALL): every task, whatever its state, as before. Read tasks here.
--
-- Why: completing a task was an UPDATE that changed indexed columns (state is in the partial indexes' predicates,
-- lease_expires_at and finished_at are keys), so it could never be HOT: a new row version in the hot table plus a
-- task_pkey entry and a task_finished_idx entry per task, and a dead version for VACUUM. Moving the row is a DELETE
-- (no index entry) and an INSERT into a table whose two indexes grow at their right end (tasks finish in about id
-- order). pgbench, 2 clients, claim_tasks + complete_tasks of 500 per transaction, 200,000 queued tasks:
-- complete_tasks 6.95 / 6.98 ms -> 5.55 / 5.37 ms per call (docs/performance.md, item 20).
-- The hot table also keeps only what can still run: its size no longer grows with retention.
--
-- Upgrading copies every finished task into finished_task in one transaction (and deletes it from the hot table):
-- on an installation that keeps millions, run prune_tasks() until it returns 0 first, so the upgrade stays short.
--
-- A row moves inside one statement, so a reader of the view (one snapshot) sees it in exactly one of the two
-- tables. A function that waits for a row lock and finds the row gone (moved by a concurrent transaction) behaves
-- as it did when that row had changed state under it: the task is no longer held, nothing changes.

ALTER TABLE tasktable.task RENAME TO live_task;
COMMENT ON TABLE tasktable.live_task IS
    'Queued and running tasks (the hot table). Change it only through the tasktable functions; read tasks from the view tasktable.task.';

CREATE TABLE tasktable.finished_task (
    -- the defaults are live_task's, for a DBA importing history; the functions give every column
    id               bigint PRIMARY KEY DEFAULT nextval('tasktable.task_id_seq'),
    -- No foreign key: its check is a query per inserted row (complete_tasks of 500: 6.8-6.95 ms with it, 5.4-5.55 ms
    -- without, pgbench, 2 clients); the trigger queue_keeps_its_finished_tasks below keeps the same promise.
    queue            text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}',
    state            tasktable.task_state NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer,
    dedup_key        text,
    worker           text,
    lease_expires_at timestamptz,
    last_error       text,
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz NOT NULL,
    -- Rows arrive only from live_task, whose CHECKs they passed; payload and result sizes are checked by the
    -- functions before they write. Only what this table adds is checked here.
    CONSTRAINT finished_task_state CHECK (state IN ('succeeded', 'dead', 'cancelled')),
    CONSTRAINT finished_task_no_lease CHECK (lease_expires_at IS NULL)
);
COMMENT ON TABLE tasktable.finished_task IS
    'Succeeded, dead and cancelled tasks until prune_tasks deletes them. Change it only through the tasktable functions; read tasks from the view tasktable.task.';

INSERT INTO tasktable.finished_task
SELECT * FROM tasktable.live_task WHERE state IN ('succeeded', 'dead', 'cancelled');
DELETE FROM tasktable.live_task WHERE state IN ('succeeded', 'dead', 'cancelled');

DROP INDEX tasktable.task_finished_idx;
-- Serves prune_tasks and task_throughput: per (queue, final state), a range on finished_at, so rows kept
-- by a longer retention (dead tasks) are never read when pruning shorter-lived ones.
CREATE INDEX task_finished_idx ON tasktable.finished_task (queue, state, finished_at);

-- A queue that still has tasks cannot be deleted or renamed: live_task's foreign key says so for live tasks, this
-- trigger for finished ones (23503, as the foreign key). It runs after the foreign key's own check, which waits for
-- a transaction moving one of the queue's tasks to finished_task; the query below then sees the moved row.
CREATE FUNCTION tasktable._check_queue_unused()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM tasktable.finished_task t WHERE t.queue = OLD.name) THEN
        RAISE EXCEPTION 'tasktable: queue % still has finished tasks', quote_literal(OLD.name)
            USING ERRCODE = 'foreign_key_violation',
                  HINT = format('prune_tasks removes them after the queue''s retention; or DELETE FROM tasktable.finished_task WHERE queue = %L;', OLD.name);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tasktable._check_queue_unused() IS 'Internal: refuses to delete or rename a queue that finished tasks still name.';
-- named to sort after the foreign key's triggers (RI_ConstraintTrigger_...): same-event triggers fire by name
CREATE TRIGGER queue_keeps_its_finished_tasks AFTER DELETE ON tasktable.queue
    FOR EACH ROW EXECUTE FUNCTION tasktable._check_queue_unused();
CREATE TRIGGER queue_keeps_its_finished_tasks_on_rename AFTER UPDATE OF name ON tasktable.queue
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION tasktable._check_queue_unused();

ALTER TABLE tasktable.live_task DROP CONSTRAINT finished_has_finished_at;
ALTER TABLE tasktable.live_task ADD CONSTRAINT live_task_state CHECK (state IN ('queued', 'running') AND finished_at IS NULL);

-- Every task, live or finished. Each table's CHECK on state lets the planner skip the other one for a query that
-- names a state (constraint_exclusion = partition, the default, covers UNION ALL views).
CREATE VIEW tasktable.task AS
SELECT * FROM tasktable.live_task
UNION ALL
SELECT * FROM tasktable.finished_task;
COMMENT ON VIEW tasktable.task IS
    'Every task: live_task (queued, running) and finished_task (succeeded, dead, cancelled). Read-only: change tasks through the tasktable functions.';


-- enqueue_tasks: as V2, writing live_task (the sequence keeps its name, tasktable.task_id_seq).
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


-- claim_tasks: as V3 and V4, reading live_task; it still returns rows of tasktable.task (now the view's row type,
-- the same columns), which needs a DROP: CREATE OR REPLACE cannot change a return type.
DROP FUNCTION tasktable.claim_tasks(integer, text, text[], interval);
CREATE FUNCTION tasktable.claim_tasks(
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

    -- The ids to claim are locked first and passed as an array (an InitPlan), so the update finds each row by
    -- one task_pkey probe whatever the planner thinks of the join: joined as a CTE, they were hashed against a
    -- seq scan of the whole table once a claim exceeded about 200 (claim of 500: 18-35 ms, now 5 ms).
    RETURN QUERY
    WITH claimed AS (
        UPDATE tasktable.live_task t
        SET state = 'running',
            attempt = t.attempt + 1,
            worker = claim_tasks.worker,
            started_at = now(),
            lease_expires_at = now() + coalesce(claim_tasks.lease, q.lease)
        FROM tasktable.queue q
        WHERE t.id = ANY (ARRAY(
                  SELECT r.id
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
COMMENT ON FUNCTION tasktable.claim_tasks(integer, text, text[], interval) IS
    'Claim up to n ready tasks for worker (queues NULL = all; lease NULL = each queue''s lease): highest '
    'priority, then oldest run_at, first. Returns them running, with attempt incremented: pass id and attempt '
    'back to complete_task / fail_task / extend_lease. At-least-once: a task whose lease expires is rescued '
    'and runs again, so handlers must be idempotent. Errors: TT004 queue, TT005 n, TT006 worker, TT007 lease.';


-- complete_tasks: the one implementation of completion. A task completes only if it is still running under the
-- given attempt; anything else (rescued, re-claimed, cancelled, already completed) is left untouched. Completing
-- after the lease ran out but before a rescue is accepted: nobody else ran it. A completed task moves from
-- live_task to finished_task in one statement.
CREATE OR REPLACE FUNCTION tasktable.complete_tasks(ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off AS $$
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
    SELECT coalesce(array_agg(moved.id), '{}') INTO done FROM moved;
    RETURN done;
END
$$;


-- fail_tasks: the one implementation of failure. For each task still running under the given attempt: dead if
-- not retryable or its attempts are used up (it moves to finished_task), otherwise queued again at retry_at (if
-- given) or after the queue's backoff. Locks the rows first, so the decision reads the current row.
CREATE OR REPLACE FUNCTION tasktable.fail_tasks(
    ids       bigint[],
    attempts  integer[],
    errors    text[],
    retryable boolean[] DEFAULT NULL,
    retry_at  timestamptz[] DEFAULT NULL
)
RETURNS TABLE (id bigint, state tasktable.task_state)
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off AS $$
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
        SELECT cur.id, left(coalesce(f.error, 'unknown error'), 10000) AS error,
               (NOT coalesce(f.retryable, true) OR cur.attempt >= coalesce(cur.max_attempts, q.max_attempts)) AS dead,
               greatest(now(), coalesce(f.retry_at, now() + tasktable.retry_delay(cur.queue, cur.attempt))) AS next_run_at
        FROM unnest(ids, attempts, errors, retryable, retry_at) AS f (id, attempt, error, retryable, retry_at)
        JOIN tasktable.live_task cur ON cur.id = ANY (fail_tasks.ids) AND cur.id = f.id AND cur.attempt = f.attempt
                                    AND cur.lease_expires_at IS NOT NULL
        JOIN tasktable.queue q ON q.name = cur.queue
        FOR UPDATE OF cur
    ), requeued AS (
        UPDATE tasktable.live_task t
        SET state = 'queued',
            run_at = held.next_run_at,
            lease_expires_at = NULL,
            last_error = held.error
        FROM held
        WHERE t.id = ANY (fail_tasks.ids) AND t.id = held.id AND NOT held.dead
        RETURNING t.id, t.state
    ), buried AS (
        DELETE FROM tasktable.live_task t
        USING held
        WHERE t.id = ANY (fail_tasks.ids) AND t.id = held.id AND held.dead
        RETURNING t.*, held.error AS new_error
    ), moved AS (
        INSERT INTO tasktable.finished_task (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                                             dedup_key, worker, lease_expires_at, last_error, result, created_at,
                                             started_at, finished_at)
        SELECT b.id, b.queue, b.kind, b.payload, 'dead', b.priority, b.run_at, b.attempt, b.max_attempts,
               b.dedup_key, b.worker, NULL, b.new_error, b.result, b.created_at, b.started_at, now()
        FROM buried b
        RETURNING finished_task.id, finished_task.state
    )
    SELECT r.id, r.state FROM requeued r
    UNION ALL
    SELECT m.id, m.state FROM moved m;
END
$$;


CREATE OR REPLACE FUNCTION tasktable.extend_lease(ids bigint[], attempts integer[], by interval DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off AS $$
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
        UPDATE tasktable.live_task t
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


CREATE OR REPLACE FUNCTION tasktable.snooze_task(id bigint, attempt integer, delay interval)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    snoozed_queue text;
BEGIN
    PERFORM tasktable._check_task_refs(ARRAY[id], ARRAY[attempt]);
    IF delay IS NULL OR delay NOT BETWEEN interval '0' AND interval '10 years' THEN
        RAISE EXCEPTION 'tasktable: snooze delay must be between 0 and 10 years, got %', coalesce(delay::text, 'NULL')
            USING ERRCODE = 'TT007', HINT = 'e.g. interval ''5 minutes''.';
    END IF;

    UPDATE tasktable.live_task t
    SET state = 'queued',
        run_at = now() + snooze_task.delay,
        lease_expires_at = NULL,
        max_attempts = greatest(t.attempt, coalesce(t.max_attempts, q.max_attempts)) + 1
    FROM tasktable.queue q
    WHERE t.id = snooze_task.id AND t.attempt = snooze_task.attempt AND t.state = 'running' AND q.name = t.queue
    RETURNING t.queue INTO snoozed_queue;
    IF FOUND AND delay = interval '0' THEN
        -- handed back (e.g. by a worker shutting down): wake an idle worker instead of waiting for its poll
        PERFORM pg_notify('tasktable', snoozed_queue);
    END IF;
    RETURN FOUND;
END
$$;


-- _lock_task: shared by the admin functions; locks the row, live or finished, or raises TT010. A row that moves
-- between the two tables while this waits for its lock is looked for again (a few times at most).
DROP FUNCTION tasktable._lock_task(bigint);
CREATE FUNCTION tasktable._lock_task(task_id bigint)
RETURNS tasktable.task
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_task tasktable.task;
BEGIN
    FOR round IN 1..3 LOOP
        SELECT t.* INTO found_task FROM tasktable.live_task t WHERE t.id = task_id FOR UPDATE;
        IF FOUND THEN
            RETURN found_task;
        END IF;
        SELECT t.* INTO found_task FROM tasktable.finished_task t WHERE t.id = task_id FOR UPDATE;
        IF FOUND THEN
            RETURN found_task;
        END IF;
        EXIT WHEN task_id IS NULL OR NOT EXISTS (SELECT FROM tasktable.task t WHERE t.id = task_id);
    END LOOP;
    RAISE EXCEPTION 'tasktable: no task with id %', coalesce(task_id::text, 'NULL')
        USING ERRCODE = 'TT010', HINT = 'It may never have existed, or prune_tasks removed it after its retention.';
END
$$;
COMMENT ON FUNCTION tasktable._lock_task(bigint) IS 'Internal: lock a task row (live or finished) for an admin change, or raise TT010.';


-- cancel_task: queued or running -> cancelled (moved to finished_task). A running handler is not interrupted, but
-- its completion or failure is refused (the task is no longer running). Cancelling a cancelled task is a no-op.
CREATE OR REPLACE FUNCTION tasktable.cancel_task(id bigint)
RETURNS tasktable.task_state
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur tasktable.task := tasktable._lock_task(cancel_task.id);
BEGIN
    IF cur.state IN ('succeeded', 'dead') THEN
        RAISE EXCEPTION 'tasktable: task % is % and cannot be cancelled', cur.id, cur.state
            USING ERRCODE = 'TT011', HINT = 'Only queued or running tasks can be cancelled.';
    END IF;
    IF cur.state = 'cancelled' THEN
        RETURN 'cancelled';
    END IF;
    WITH gone AS (
        DELETE FROM tasktable.live_task t WHERE t.id = cur.id RETURNING t.*
    )
    INSERT INTO tasktable.finished_task (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                                         dedup_key, worker, lease_expires_at, last_error, result, created_at,
                                         started_at, finished_at)
    SELECT g.id, g.queue, g.kind, g.payload, 'cancelled', g.priority, g.run_at, g.attempt, g.max_attempts,
           g.dedup_key, g.worker, NULL, g.last_error, g.result, g.created_at, g.started_at, now()
    FROM gone g;
    RETURN 'cancelled';
END
$$;


-- retry_task: dead or cancelled -> queued, to run now (moved back to live_task with its id). A task that had used
-- all its attempts gets one more.
CREATE OR REPLACE FUNCTION tasktable.retry_task(id bigint)
RETURNS tasktable.task_state
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur  tasktable.task := tasktable._lock_task(retry_task.id);
    twin bigint;
BEGIN
    IF cur.state NOT IN ('dead', 'cancelled') THEN
        RAISE EXCEPTION 'tasktable: task % is % and cannot be retried', cur.id, cur.state
            USING ERRCODE = 'TT011', HINT = 'Only dead or cancelled tasks can be retried; queued tasks run by themselves.';
    END IF;
    SELECT t.id INTO twin FROM tasktable.live_task t
    WHERE t.queue = cur.queue AND t.dedup_key = cur.dedup_key AND t.state IN ('queued', 'running');
    IF FOUND THEN
        RAISE EXCEPTION 'tasktable: task % cannot be retried while task % with the same dedup_key is live', cur.id, twin
            USING ERRCODE = 'TT011', HINT = 'Wait for or cancel the live task first.';
    END IF;

    BEGIN
        WITH gone AS (
            DELETE FROM tasktable.finished_task t WHERE t.id = cur.id RETURNING t.*
        )
        INSERT INTO tasktable.live_task (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                                         dedup_key, worker, lease_expires_at, last_error, result, created_at,
                                         started_at, finished_at)
        OVERRIDING SYSTEM VALUE
        SELECT g.id, g.queue, g.kind, g.payload, 'queued', g.priority, now(), g.attempt,
               CASE WHEN g.attempt >= coalesce(g.max_attempts, q.max_attempts) THEN g.attempt + 1 ELSE g.max_attempts END,
               g.dedup_key, g.worker, NULL, g.last_error, g.result, g.created_at, g.started_at, NULL
        FROM gone g
        JOIN tasktable.queue q ON q.name = g.queue;
    EXCEPTION WHEN unique_violation THEN
        -- a concurrent transaction made a task with the same dedup_key live after the check above
        RAISE EXCEPTION 'tasktable: task % cannot be retried while another task with the same dedup_key is live', cur.id
            USING ERRCODE = 'TT011', HINT = 'Wait for or cancel the live task first.';
    END;
    PERFORM pg_notify('tasktable', cur.queue);
    RETURN 'queued';
END
$$;


CREATE OR REPLACE FUNCTION tasktable.rescue_expired_tasks(max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    expired_ids      bigint[];
    expired_attempts integer[];
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'tasktable: max_rows must be 1 or more, got %', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'TT005', HINT = 'Leave it out for the default of 10000 per call.';
    END IF;
    SELECT coalesce(array_agg(e.id), '{}'), coalesce(array_agg(e.attempt), '{}') INTO expired_ids, expired_attempts
    FROM (
        -- Locked until the end of this call: a heartbeat in flight holds the row, so it is skipped here
        -- rather than rescued from under a live worker; a committed heartbeat fails the recheck.
        SELECT t.id, t.attempt FROM tasktable.live_task t
        WHERE t.state = 'running' AND t.lease_expires_at < now()
        ORDER BY t.lease_expires_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    ) e;

    RETURN (SELECT count(*) FROM tasktable.fail_tasks(
        expired_ids, expired_attempts,
        array_fill('lease expired: the worker stopped heartbeating'::text, ARRAY[cardinality(expired_ids)])));
END
$$;


CREATE OR REPLACE FUNCTION tasktable.prune_tasks(max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    pruned integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'tasktable: max_rows must be 1 or more, got %', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'TT005', HINT = 'Leave it out for the default of 10000 per call.';
    END IF;
    -- One index range per (queue, final state): finished_at below that pair's cutoff.
    WITH policy AS (
        SELECT q.name, k.state, now() - k.keep AS cutoff
        FROM tasktable.queue q
        CROSS JOIN LATERAL (VALUES ('succeeded'::tasktable.task_state, q.retention),
                                   ('cancelled'::tasktable.task_state, q.retention),
                                   ('dead'::tasktable.task_state, q.dead_retention)) AS k (state, keep)
    ), doomed AS (
        SELECT d.id
        FROM policy p
        CROSS JOIN LATERAL (
            SELECT t.id FROM tasktable.finished_task t
            WHERE t.queue = p.name AND t.state = p.state AND t.finished_at < p.cutoff
            LIMIT max_rows
            FOR UPDATE OF t SKIP LOCKED
        ) d
        LIMIT max_rows
    )
    DELETE FROM tasktable.finished_task t USING doomed WHERE t.id = doomed.id;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;


-- queue_stats and task_throughput followed the renamed table; they read each table for what it holds.
CREATE OR REPLACE VIEW tasktable.queue_stats AS
SELECT q.name AS queue,
       q.paused,
       coalesce(l.queued, 0) AS queued,
       coalesce(l.ready, 0) AS ready,
       coalesce(l.running, 0) AS running,
       coalesce(f.succeeded, 0) AS succeeded,
       coalesce(f.dead, 0) AS dead,
       coalesce(f.cancelled, 0) AS cancelled,
       l.oldest_ready_age
FROM tasktable.queue q
LEFT JOIN (
    SELECT t.queue,
           count(*) FILTER (WHERE t.state = 'queued') AS queued,
           count(*) FILTER (WHERE t.state = 'queued' AND t.run_at <= now()) AS ready,
           count(*) FILTER (WHERE t.state = 'running') AS running,
           now() - min(t.run_at) FILTER (WHERE t.state = 'queued' AND t.run_at <= now()) AS oldest_ready_age
    FROM tasktable.live_task t
    GROUP BY t.queue
) l ON l.queue = q.name
LEFT JOIN (
    SELECT t.queue,
           count(*) FILTER (WHERE t.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE t.state = 'dead') AS dead,
           count(*) FILTER (WHERE t.state = 'cancelled') AS cancelled
    FROM tasktable.finished_task t
    GROUP BY t.queue
) f ON f.queue = q.name;

CREATE OR REPLACE VIEW tasktable.task_throughput AS
SELECT q.name AS queue,
       date_trunc('minute', f.finished_at) AS minute,
       count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE f.state = 'dead') AS dead,
       count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled
FROM tasktable.queue q
CROSS JOIN unnest(ARRAY['succeeded', 'dead', 'cancelled']::tasktable.task_state[]) AS s (state)
CROSS JOIN LATERAL (
    SELECT t.state, t.finished_at FROM tasktable.finished_task t
    WHERE t.queue = q.name AND t.state = s.state AND t.finished_at >= date_trunc('minute', now()) - interval '59 minutes'
) f
GROUP BY q.name, date_trunc('minute', f.finished_at);
