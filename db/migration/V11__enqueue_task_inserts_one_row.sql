-- tasktable 11: enqueue_task inserts its one task with a statement of its own instead of going through
-- enqueue_tasks' batch statements. Same signatures, same rules, same errors, except that enqueue_task's errors no
-- longer carry the DETAIL 'task 1 of the batch' (there is no batch).
--
-- For one task, enqueue_tasks' statements cost more to start than to run: the executor start-up of its CTEs, hash
-- joins and aggregates was 17% of all CPU with 8 pgbench clients calling enqueue_task (perf, session 7), the
-- validation query's LIMIT and sort more. enqueue_task now holds its queue, reads it, inserts one row (INSERT ...
-- ON CONFLICT DO NOTHING) and notifies, each a statement that starts in a few microseconds. pgbench, 8 clients,
-- SELECT tasktable.enqueue_task('noop') per transaction, -M prepared, a 2-core machine whose bare single-row INSERT
-- commits 7,100-7,400/s from 8 clients (session 8), two databases, before and after alternating (tasks/s):
--
--                       through enqueue_tasks (before)   one-row path (after)
--   8 clients           2,225 / 2,100 / 2,781            3,680 / 3,426 / 3,865
--   4 clients, 1,000 per enqueue_tasks call: 103,922 / 97,218 / 97,036 before, 88,684 / 104,680 / 107,421 after
--
-- (prototypes whose queue hold was an inline FOR KEY SHARE, or an advisory lock, were no faster than _hold_queues:
-- 4,335 / 4,523 and 4,264 / 4,363 against 4,593 / 3,850; without the planner settings below, 3,249 / 3,667.)
--
-- The rules stay in one place: what makes a spec bad is _task_spec_problem, the error each problem raises is
-- _raise_task_spec_problem; both functions use them, in the same order as before (the queue last). Both are new:
-- where EXECUTE is revoked from PUBLIC, grant them to the roles that enqueue (docs/dba-guide.md, roles and grants).

-- _task_spec_problem: the first thing wrong with a task spec, or NULL. queue_known: whether its queue exists (looked
-- up by the caller, which holds it). A single expression, inlined into the caller's query by the planner.
CREATE FUNCTION tasktable._task_spec_problem(
    kind text, payload jsonb, priority integer, max_attempts integer, dedup_key text, queue_known boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE
    WHEN kind IS NULL OR length(kind) NOT BETWEEN 1 AND 255 THEN 'kind'
    WHEN payload IS NOT NULL AND jsonb_typeof(payload) NOT IN ('object', 'array') THEN 'payload'
    WHEN payload IS NOT NULL AND octet_length(payload::text) > 1048576 THEN 'size'
    WHEN priority NOT BETWEEN -1000 AND 1000 THEN 'priority'
    WHEN max_attempts NOT BETWEEN 1 AND 1000 THEN 'max_attempts'
    WHEN length(dedup_key) NOT BETWEEN 1 AND 255 THEN 'dedup_key'
    WHEN NOT queue_known THEN 'queue'
END;
COMMENT ON FUNCTION tasktable._task_spec_problem(text, jsonb, integer, integer, text, boolean) IS
    'Internal: the first problem of a task spec (kind, payload, size, priority, max_attempts, dedup_key, queue) or NULL.';

-- _raise_task_spec_problem: raises the error of a problem _task_spec_problem found. task_no: the spec's position in
-- a batch, named in the DETAIL; NULL for enqueue_task.
CREATE FUNCTION tasktable._raise_task_spec_problem(
    problem text, task_no bigint, kind text, queue text, priority integer, max_attempts integer)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    code    text;
    message text;
    hint    text;
BEGIN
    CASE problem
    WHEN 'kind' THEN
        code := 'TT001';
        message := format('tasktable: task kind must be 1 to 255 characters, got %s', coalesce(quote_literal(kind), 'NULL'));
        hint := 'The kind names the handler that runs the task, e.g. ''send_email''.';
    WHEN 'payload' THEN
        code := 'TT002';
        message := 'tasktable: task payload must be a JSON object or array';
        hint := 'Wrap scalars in an object, e.g. {"value": 42}.';
    WHEN 'size' THEN
        code := 'TT003';
        message := 'tasktable: task payload exceeds 1 MB';
        hint := 'Store large data in a table and put its key in the payload.';
    WHEN 'priority' THEN
        code := 'TT012';
        message := format('tasktable: priority must be between -1000 and 1000, got %s', priority);
        hint := 'Higher priorities run first; 0 is the default.';
    WHEN 'max_attempts' THEN
        code := 'TT012';
        message := format('tasktable: max_attempts must be between 1 and 1000, got %s', max_attempts);
        hint := 'Leave it NULL to follow the queue''s max_attempts.';
    WHEN 'dedup_key' THEN
        code := 'TT012';
        message := 'tasktable: dedup_key must be 1 to 255 characters';
        hint := 'Leave it NULL for no deduplication.';
    WHEN 'queue' THEN
        code := 'TT004';
        message := format('tasktable: unknown queue %s', quote_literal(coalesce(queue, 'default')));
        hint := format('Create it first: INSERT INTO tasktable.queue (name) VALUES (%L);', coalesce(queue, 'default'));
    END CASE;
    IF task_no IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint;
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint, DETAIL = format('task %s of the batch', task_no);
END
$$;
COMMENT ON FUNCTION tasktable._raise_task_spec_problem(text, bigint, text, text, integer, integer) IS
    'Internal: raises the error (TT001-TT004, TT012) of a problem found by _task_spec_problem.';


-- enqueue_tasks: as V7 (with V9's settings), its checks and errors taken from the two functions above, and a spec
-- lost to a concurrent commit of its dedup key retried through enqueue_task.
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
    -- started, or the live task holding it finished meanwhile. enqueue_task inserts or finds it, each try with a new
    -- snapshot (READ COMMITTED).
    lost := array_position(ids, NULL);
    WHILE lost IS NOT NULL LOOP
        ids[lost] := tasktable.enqueue_task((specs[lost]).kind, (specs[lost]).payload, (specs[lost]).queue,
                                            (specs[lost]).run_at, (specs[lost]).priority,
                                            (specs[lost]).max_attempts, (specs[lost]).dedup_key);
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


-- enqueue_task: one task, by the same rules as enqueue_tasks, in statements made for one row. The planner settings
-- are enqueue_tasks' (V9): one generic plan per session, and never a seq scan for the dedup lookup, whatever
-- ANALYZE saw when the plan was made. Without them: 3,249 / 3,667 tasks/s in the measurement above.
CREATE OR REPLACE FUNCTION tasktable.enqueue_task(
    kind         text,
    payload      jsonb DEFAULT '{}',
    queue        text DEFAULT 'default',
    run_at       timestamptz DEFAULT NULL,
    priority     integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    dedup_key    text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
-- The parameters are named like live_task's columns: in the statements below a bare name is the column, and every
-- parameter is written enqueue_task.name.
#variable_conflict use_column
DECLARE
    queue_name text := coalesce(enqueue_task.queue, 'default');
    due        timestamptz := coalesce(enqueue_task.run_at, now());
    problem    text;
    is_paused  boolean;
    task_id    bigint;
BEGIN
    -- Held, then looked up, as in enqueue_tasks.
    PERFORM tasktable._hold_queues(ARRAY[queue_name]);
    SELECT q.paused INTO is_paused FROM tasktable.queue q WHERE q.name = queue_name;
    problem := tasktable._task_spec_problem(enqueue_task.kind, enqueue_task.payload, enqueue_task.priority,
                                           enqueue_task.max_attempts, enqueue_task.dedup_key, FOUND);
    IF problem IS NOT NULL THEN
        PERFORM tasktable._raise_task_spec_problem(problem, NULL, enqueue_task.kind, enqueue_task.queue,
                                                   enqueue_task.priority, enqueue_task.max_attempts);
    END IF;

    LOOP
        INSERT INTO tasktable.live_task AS t (queue, kind, payload, run_at, priority, max_attempts, dedup_key)
        VALUES (queue_name, enqueue_task.kind, coalesce(enqueue_task.payload, '{}'), due,
                coalesce(enqueue_task.priority, 0), enqueue_task.max_attempts, enqueue_task.dedup_key)
        ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
        RETURNING t.id INTO task_id;
        IF task_id IS NOT NULL THEN
            -- The wake-up, elected as in enqueue_tasks (one notifier per queue at a time).
            IF NOT is_paused AND due <= now() AND pg_try_advisory_xact_lock(1953787508, hashtext(queue_name)) THEN
                PERFORM pg_notify('tasktable', queue_name);
            END IF;
            RETURN task_id;
        END IF;
        IF enqueue_task.dedup_key IS NULL THEN
            RETURN NULL; -- no key, so no conflict: a BEFORE trigger on live_task dropped the row
        END IF;
        -- The dedup key is taken by a live task: its id is the answer. If that task finished between the two
        -- statements, try again; each statement takes a new snapshot (READ COMMITTED).
        SELECT live.id INTO task_id FROM tasktable.live_task live
        WHERE live.queue = queue_name AND live.dedup_key = enqueue_task.dedup_key
          AND live.state IN ('queued', 'running');
        IF task_id IS NOT NULL THEN
            RETURN task_id;
        END IF;
    END LOOP;
END
$$;
