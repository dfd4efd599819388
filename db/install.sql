-- tasktable: single-file install for psql, GENERATED from db/migration by the build
-- (io.tasktable.InstallScript). Do not edit: change a migration and rebuild.
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f db/install.sql
--
-- Applies, in one transaction, each migration the database does not have yet and records it in
-- tasktable.flyway_schema_history exactly as Flyway does, so `tasktable migrate` and this script
-- can take turns. On an up-to-date database it changes nothing; it never drops anything.
\set ON_ERROR_STOP on
BEGIN;
CREATE SCHEMA IF NOT EXISTS tasktable;
CREATE TABLE IF NOT EXISTS tasktable.flyway_schema_history (
    installed_rank integer NOT NULL CONSTRAINT flyway_schema_history_pk PRIMARY KEY,
    version varchar(50),
    description varchar(200) NOT NULL,
    type varchar(20) NOT NULL,
    script varchar(1000) NOT NULL,
    checksum integer,
    installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS flyway_schema_history_s_idx ON tasktable.flyway_schema_history (success);

-- ================================================================================================
-- V1__task_queue_core.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '1' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- V1: the task table, per-queue policy, and the queue functions (the public SQL API).
--
-- Every queue rule lives here, once: state transitions, dedup, leases, retry backoff, dead letters.
-- Workers in any language call these functions; Java only wraps them.
-- Flyway runs this with schemas=tasktable, which creates the schema (install.sql adds CREATE SCHEMA).
--
-- Errors raised by these functions use SQLSTATE class TT (not used by PostgreSQL itself):
--   TT001 invalid task kind             TT007 invalid interval (lease, delay)
--   TT002 payload not an object/array   TT008 malformed array argument (NULL, mismatched lengths, not 1-D)
--   TT003 payload too large             TT009 invalid attempt number
--   TT004 unknown queue                 TT010 unknown task
--   TT005 batch size out of range       TT011 illegal state change
--   TT006 invalid worker name           TT012 task option out of range (priority, max_attempts, dedup_key)
-- Each error carries a message and a hint. A raised error aborts the statement: nothing is half-written.

CREATE TYPE tasktable.task_state AS ENUM ('queued', 'running', 'succeeded', 'dead', 'cancelled');
COMMENT ON TYPE tasktable.task_state IS
    'queued: waiting to run (now or at run_at, including a retry after backoff); running: claimed, under a lease; '
    'succeeded, dead (attempts used up or not retryable), cancelled: final until retry_task.';

-- Per-queue policy. A DBA tunes behaviour with UPDATE; it takes effect at the next claim or failure.
CREATE TABLE tasktable.queue (
    name           text PRIMARY KEY,
    paused         boolean NOT NULL DEFAULT false,
    max_attempts   integer NOT NULL DEFAULT 25,
    backoff_base   interval NOT NULL DEFAULT '1 second',
    backoff_factor double precision NOT NULL DEFAULT 2,
    backoff_cap    interval NOT NULL DEFAULT '1 hour',
    backoff_jitter double precision NOT NULL DEFAULT 0.1,
    lease          interval NOT NULL DEFAULT '30 seconds',
    retention      interval NOT NULL DEFAULT '7 days',
    dead_retention interval NOT NULL DEFAULT '30 days',
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_name_valid CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    CONSTRAINT max_attempts_in_range CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT backoff_base_positive CHECK (backoff_base > interval '0'),
    CONSTRAINT backoff_factor_in_range CHECK (backoff_factor BETWEEN 1 AND 10),
    CONSTRAINT backoff_cap_at_least_base CHECK (backoff_cap >= backoff_base),
    CONSTRAINT backoff_cap_at_most_30_days CHECK (backoff_cap <= interval '30 days'),
    CONSTRAINT backoff_jitter_in_range CHECK (backoff_jitter BETWEEN 0 AND 1),
    CONSTRAINT lease_in_range CHECK (lease BETWEEN interval '1 second' AND interval '1 day'),
    -- Bounded so that now() + delay and now() - retention always stay valid timestamps.
    CONSTRAINT retention_in_range CHECK (retention BETWEEN interval '0' AND interval '100 years'
                                         AND dead_retention BETWEEN interval '0' AND interval '100 years')
);
COMMENT ON TABLE tasktable.queue IS
    'Per-queue policy. Create a queue with INSERT INTO tasktable.queue (name) VALUES (...); tune it with UPDATE.';
COMMENT ON COLUMN tasktable.queue.paused IS 'Paused queues accept tasks but claim_tasks skips them.';
COMMENT ON COLUMN tasktable.queue.max_attempts IS
    'Attempts before a task goes dead, for tasks enqueued without their own max_attempts (read at each failure). '
    '25 with the default backoff spreads retries over about 13 hours.';
COMMENT ON COLUMN tasktable.queue.backoff_base IS 'Delay before the first retry: retry n waits least(cap, base * factor^(n-1)), minus jitter.';
COMMENT ON COLUMN tasktable.queue.backoff_factor IS 'Growth of the retry delay per attempt (1 = constant).';
COMMENT ON COLUMN tasktable.queue.backoff_cap IS 'Longest retry delay.';
COMMENT ON COLUMN tasktable.queue.backoff_jitter IS
    'Fraction of the delay removed at random (0..1), so failed tasks of one burst do not retry in lockstep.';
COMMENT ON COLUMN tasktable.queue.lease IS
    'How long a claim holds a task without a heartbeat. 30 s: workers heartbeat every ~10 s, so a crashed '
    'worker''s tasks come back within seconds, not hours.';
COMMENT ON COLUMN tasktable.queue.retention IS 'prune_tasks deletes succeeded and cancelled tasks finished longer ago than this.';
COMMENT ON COLUMN tasktable.queue.dead_retention IS 'prune_tasks deletes dead tasks finished longer ago than this (kept longer for inspection).';

INSERT INTO tasktable.queue (name) VALUES ('default');

CREATE TABLE tasktable.task (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL REFERENCES tasktable.queue (name),
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}',
    state            tasktable.task_state NOT NULL DEFAULT 'queued',
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
    finished_at      timestamptz,
    CONSTRAINT kind_valid CHECK (length(kind) BETWEEN 1 AND 255),
    CONSTRAINT payload_object_or_array CHECK (jsonb_typeof(payload) IN ('object', 'array')),
    CONSTRAINT payload_size_limit CHECK (octet_length(payload::text) <= 1048576),
    CONSTRAINT priority_in_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT attempt_within_max CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT dedup_key_valid CHECK (length(dedup_key) BETWEEN 1 AND 255),
    CONSTRAINT result_size_limit CHECK (octet_length(result::text) <= 1048576),
    CONSTRAINT running_has_lease CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
    CONSTRAINT finished_has_finished_at CHECK ((state IN ('succeeded', 'dead', 'cancelled')) = (finished_at IS NOT NULL))
);
COMMENT ON TABLE tasktable.task IS 'One row per task. Change it only through the tasktable functions.';
COMMENT ON COLUMN tasktable.task.priority IS 'Higher runs first (-1000..1000).';
COMMENT ON COLUMN tasktable.task.attempt IS 'Number of times the task was claimed; also the fencing token a worker passes back.';
COMMENT ON COLUMN tasktable.task.max_attempts IS 'NULL: follow the queue''s max_attempts.';
COMMENT ON COLUMN tasktable.task.dedup_key IS 'At most one queued or running task per (queue, dedup_key).';
COMMENT ON COLUMN tasktable.task.worker IS 'The worker that claimed the task last.';

-- Serves claim_tasks: WHERE state = 'queued' AND run_at <= now() ORDER BY priority DESC, run_at, id.
-- Partial on queued rows, so finished and running rows never slow the claim; within one priority the
-- future-dated rows sort after the due ones, so the scan stops before reaching them.
CREATE INDEX task_claim_idx ON tasktable.task (priority DESC, run_at, id) WHERE state = 'queued';
-- Serves dedup in enqueue_tasks (ON CONFLICT) and keeps live duplicates out.
CREATE UNIQUE INDEX task_dedup_idx ON tasktable.task (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');
-- Serves rescue_expired_tasks: WHERE state = 'running' AND lease_expires_at < now().
CREATE INDEX task_lease_idx ON tasktable.task (lease_expires_at) WHERE state = 'running';
-- Serves prune_tasks and task_throughput: per (queue, final state), a range on finished_at, so rows kept
-- by a longer retention (dead tasks) are never read when pruning shorter-lived ones.
CREATE INDEX task_finished_idx ON tasktable.task (queue, state, finished_at) WHERE finished_at IS NOT NULL;

-- Input of enqueue_tasks: NULL fields take the same defaults as enqueue_task.
CREATE TYPE tasktable.task_spec AS (
    kind         text,
    payload      jsonb,
    queue        text,
    run_at       timestamptz,
    priority     integer,
    max_attempts integer,
    dedup_key    text
);
COMMENT ON TYPE tasktable.task_spec IS
    'One task for enqueue_tasks: (kind, payload, queue, run_at, priority, max_attempts, dedup_key); NULL means the default.';


-- enqueue_tasks: the one implementation of enqueue. Validates the whole batch first (the first bad spec
-- raises, nothing is inserted), inserts in one statement, and returns the ids in input order. A spec whose
-- (queue, dedup_key) matches a queued or running task is not inserted; the live task's id is returned.
-- Newly inserted due tasks NOTIFY channel 'tasktable' with the queue name (unless the queue is paused);
-- PostgreSQL delivers it at commit, so a rolled-back enqueue neither exists nor wakes anyone.
CREATE FUNCTION tasktable.enqueue_tasks(specs tasktable.task_spec[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
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
        SELECT nextval(pg_get_serial_sequence('tasktable.task', 'id')) AS id, s.ord,
               s.kind, coalesce(s.payload, '{}') AS payload, coalesce(s.queue, 'default') AS queue,
               coalesce(s.run_at, now()) AS run_at, coalesce(s.priority, 0) AS priority,
               s.max_attempts, s.dedup_key
        FROM unnest(specs) WITH ORDINALITY AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
    ), inserted AS (
        INSERT INTO tasktable.task (id, queue, kind, payload, run_at, priority, max_attempts, dedup_key)
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
                                  (SELECT live.id FROM tasktable.task live
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
COMMENT ON FUNCTION tasktable.enqueue_tasks(tasktable.task_spec[]) IS
    'Enqueue many tasks in one statement; returns their ids in input order. Runs in the caller''s transaction: '
    'the tasks exist iff it commits. A spec matching a live (queued or running) task''s (queue, dedup_key) returns '
    'that task''s id instead. Errors: TT001 kind, TT002 payload type, TT003 payload size, TT004 unknown queue, '
    'TT012 priority/max_attempts/dedup_key, TT008 not a 1-D array. Without composite types, use enqueue_tasks_json.';


-- enqueue_task: one task; wraps enqueue_tasks. Named arguments skip the defaults you do not need:
--   SELECT tasktable.enqueue_task('send_email', '{"to": "a@example.com"}', queue => 'mail');
CREATE FUNCTION tasktable.enqueue_task(
    kind         text,
    payload      jsonb DEFAULT '{}',
    queue        text DEFAULT 'default',
    run_at       timestamptz DEFAULT NULL,
    priority     integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    dedup_key    text DEFAULT NULL
)
RETURNS bigint
LANGUAGE sql VOLATILE
RETURN (tasktable.enqueue_tasks(ARRAY[ROW(kind, payload, queue, run_at, priority, max_attempts, dedup_key)::tasktable.task_spec]))[1];
COMMENT ON FUNCTION tasktable.enqueue_task(text, jsonb, text, timestamptz, integer, integer, text) IS
    'Enqueue one task in the caller''s transaction and return its id (or the id of the live task with the same '
    'queue and dedup_key). run_at NULL = now; max_attempts NULL = the queue''s. Errors as enqueue_tasks.';


-- enqueue_tasks_json: enqueue_tasks for callers without composite types (any driver can send text):
--   SELECT tasktable.enqueue_tasks_json('[{"kind": "send_email", "payload": {"to": "a@example.com"}},
--                                         {"kind": "resize", "queue": "images", "priority": 5}]');
-- Each element is an object with the task_spec fields; unknown fields and wrong JSON types are refused
-- (TT012) rather than ignored, so a typo such as "queu" never sends a task to the wrong queue.
CREATE FUNCTION tasktable.enqueue_tasks_json(specs jsonb)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    bad       record;
    converted tasktable.task_spec[];
BEGIN
    IF specs IS NULL OR jsonb_typeof(specs) <> 'array' THEN
        RAISE EXCEPTION 'tasktable: specs must be a JSON array of task objects'
            USING ERRCODE = 'TT008', HINT = 'e.g. [{"kind": "send_email", "payload": {"to": "a@example.com"}}]';
    END IF;

    SELECT e.ord, CASE
               WHEN jsonb_typeof(e.spec) <> 'object' THEN 'must be a JSON object'
               WHEN u.key IS NOT NULL THEN format('has an unknown field %L', u.key)
               WHEN jsonb_typeof(e.spec -> 'kind') NOT IN ('string', 'null') THEN 'kind must be a string'
               WHEN jsonb_typeof(e.spec -> 'queue') NOT IN ('string', 'null') THEN 'queue must be a string'
               WHEN jsonb_typeof(e.spec -> 'run_at') NOT IN ('string', 'null') THEN 'run_at must be a timestamp string'
               WHEN jsonb_typeof(e.spec -> 'dedup_key') NOT IN ('string', 'null') THEN 'dedup_key must be a string'
               WHEN jsonb_typeof(e.spec -> 'priority') NOT IN ('number', 'null') THEN 'priority must be an integer'
               WHEN jsonb_typeof(e.spec -> 'max_attempts') NOT IN ('number', 'null') THEN 'max_attempts must be an integer'
           END AS problem
    INTO bad
    FROM jsonb_array_elements(specs) WITH ORDINALITY AS e (spec, ord)
    LEFT JOIN LATERAL (
        SELECT k.key FROM jsonb_object_keys(CASE WHEN jsonb_typeof(e.spec) = 'object' THEN e.spec ELSE '{}' END) AS k (key)
        WHERE k.key NOT IN ('kind', 'payload', 'queue', 'run_at', 'priority', 'max_attempts', 'dedup_key')
        LIMIT 1
    ) u ON true
    WHERE jsonb_typeof(e.spec) <> 'object' OR u.key IS NOT NULL
       OR jsonb_typeof(e.spec -> 'kind') NOT IN ('string', 'null')
       OR jsonb_typeof(e.spec -> 'queue') NOT IN ('string', 'null')
       OR jsonb_typeof(e.spec -> 'run_at') NOT IN ('string', 'null')
       OR jsonb_typeof(e.spec -> 'dedup_key') NOT IN ('string', 'null')
       OR jsonb_typeof(e.spec -> 'priority') NOT IN ('number', 'null')
       OR jsonb_typeof(e.spec -> 'max_attempts') NOT IN ('number', 'null')
    ORDER BY e.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'tasktable: task % of the batch %', bad.ord, bad.problem
            USING ERRCODE = 'TT012', HINT = 'Fields: kind, payload, queue, run_at, priority, max_attempts, dedup_key.';
    END IF;

    BEGIN
        SELECT array_agg(ROW(e.spec ->> 'kind', nullif(e.spec -> 'payload', 'null'::jsonb), e.spec ->> 'queue',
                             (e.spec ->> 'run_at')::timestamptz, (e.spec ->> 'priority')::integer,
                             (e.spec ->> 'max_attempts')::integer, e.spec ->> 'dedup_key')::tasktable.task_spec
                         ORDER BY e.ord)
        INTO converted
        FROM jsonb_array_elements(specs) WITH ORDINALITY AS e (spec, ord);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'tasktable: invalid task field: %', SQLERRM
            USING ERRCODE = 'TT012', HINT = 'run_at is a timestamp such as 2030-01-01T09:00:00Z; priority and max_attempts are integers.';
    END;
    RETURN tasktable.enqueue_tasks(converted);
END
$$;
COMMENT ON FUNCTION tasktable.enqueue_tasks_json(jsonb) IS
    'enqueue_tasks for any driver: a JSON array of {kind, payload, queue, run_at, priority, max_attempts, '
    'dedup_key} objects; returns the ids in input order. Unknown fields or wrong JSON types raise TT012; '
    'otherwise the errors of enqueue_tasks.';


-- claim_tasks: the hot path, one statement. Up to n ready tasks (queued, run_at <= now(), queue not paused),
-- highest priority first, then oldest run_at, then id; SKIP LOCKED so concurrent workers never wait on
-- each other nor get the same task. Each claimed task becomes running with attempt + 1 and a lease of
-- `lease` (default: its queue's). The returned attempt is the fencing token for complete/fail/extend.
CREATE FUNCTION tasktable.claim_tasks(
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
    -- planner estimates well. The former "queue <> ALL (paused queues)" was estimated at ~0 rows whenever one
    -- queue held most tasks, so it planned a seq scan + sort of every queued row instead of walking
    -- task_claim_idx: 71 ms per claim of 100 with 60,000 queued, a drain of 3,224 tasks/s (bench drain,
    -- 1 worker x 64); with this, the index walk stops after n rows.
    SELECT array_agg(q.name) INTO claimable
    FROM tasktable.queue q
    WHERE NOT q.paused AND (claim_tasks.queues IS NULL OR q.name = ANY (claim_tasks.queues));
    IF claimable IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH ready AS (
        SELECT t.id
        FROM tasktable.task t
        WHERE t.state = 'queued'
          AND t.run_at <= now()
          AND t.queue = ANY (claimable)
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT claim_tasks.n
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasktable.task t
    SET state = 'running',
        attempt = t.attempt + 1,
        worker = claim_tasks.worker,
        started_at = now(),
        lease_expires_at = now() + coalesce(claim_tasks.lease, q.lease)
    FROM ready, tasktable.queue q
    WHERE t.id = ready.id AND q.name = t.queue
    RETURNING t.*;
END
$$;
COMMENT ON FUNCTION tasktable.claim_tasks(integer, text, text[], interval) IS
    'Claim up to n ready tasks for worker (queues NULL = all; lease NULL = each queue''s lease): highest '
    'priority, then oldest run_at, first. Returns them running, with attempt incremented: pass id and attempt '
    'back to complete_task / fail_task / extend_lease. At-least-once: a task whose lease expires is rescued '
    'and runs again, so handlers must be idempotent. Errors: TT004 queue, TT005 n, TT006 worker, TT007 lease.';


-- _check_task_refs: shared argument checks of the batch functions that take (ids, attempts).
CREATE FUNCTION tasktable._check_task_refs(ids bigint[], attempts integer[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ids IS NULL OR attempts IS NULL OR array_ndims(ids) > 1 OR array_ndims(attempts) > 1
       OR cardinality(ids) <> cardinality(attempts) OR array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tasktable: ids and attempts must be non-null arrays of equal length'
            USING ERRCODE = 'TT008', HINT = 'Pass one-dimensional arrays: each task''s id with the attempt number claim_tasks returned for it.';
    END IF;
    IF EXISTS (SELECT FROM unnest(attempts) AS a WHERE a IS NULL OR a < 1) THEN
        RAISE EXCEPTION 'tasktable: attempt numbers must be 1 or more'
            USING ERRCODE = 'TT009', HINT = 'Pass the attempt number claim_tasks returned with the task.';
    END IF;
END
$$;
COMMENT ON FUNCTION tasktable._check_task_refs(bigint[], integer[]) IS 'Internal: argument checks for (ids, attempts) pairs.';


-- complete_tasks: the one implementation of completion. A task completes only if it is still running
-- under the given attempt; anything else (rescued, re-claimed, cancelled, already completed) is left
-- untouched. Completing after the lease ran out but before a rescue is accepted: nobody else ran it.
CREATE FUNCTION tasktable.complete_tasks(ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
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

    WITH completed AS (
        UPDATE tasktable.task t
        SET state = 'succeeded',
            result = c.result,
            lease_expires_at = NULL,
            finished_at = now()
        FROM unnest(ids, attempts, results) AS c (id, attempt, result)
        -- "lease_expires_at IS NOT NULL" says "running" (CHECK running_has_lease) in a form task_lease_idx
        -- cannot serve. With "state = 'running'", stale statistics (ANALYZE saw no running task) made the
        -- planner hash-join against every entry of task_lease_idx, live or dead, on each call: a worker whose
        -- completions fell behind slowed down further, until leases expired (bench drain of 50,000 never
        -- finished in 5 minutes). Now each id is one task_pkey probe, whatever the table holds.
        WHERE t.id = c.id AND t.attempt = c.attempt AND t.lease_expires_at IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(completed.id), '{}') INTO done FROM completed;
    RETURN done;
END
$$;
COMMENT ON FUNCTION tasktable.complete_tasks(bigint[], integer[], jsonb[]) IS
    'Mark tasks succeeded, each only if still running under the given attempt (results optional). Returns the '
    'ids completed; an id missing from the result was no longer held by the caller (lease lost, cancelled) and '
    'was not changed. Errors: TT008 arrays, TT009 attempt.';

CREATE FUNCTION tasktable.complete_task(id bigint, attempt integer, result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE sql VOLATILE
RETURN cardinality(tasktable.complete_tasks(ARRAY[id], ARRAY[attempt], ARRAY[result])) = 1;
COMMENT ON FUNCTION tasktable.complete_task(bigint, integer, jsonb) IS
    'Mark one task succeeded. true: done; false: the caller no longer holds this attempt (nothing changed).';


-- retry_delay: the backoff policy of a queue, readable on its own:
--   SELECT a, tasktable.retry_delay('default', a) FROM generate_series(1, 10) a;
-- Retry n waits least(cap, base * factor^(n-1)) minus up to jitter of it, so it never exceeds the cap.
CREATE FUNCTION tasktable.retry_delay(queue text, attempt integer)
RETURNS interval
LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs =>
               least(extract(epoch FROM q.backoff_cap)::double precision,
                     extract(epoch FROM q.backoff_base)::double precision
                         * power(q.backoff_factor, least(greatest(retry_delay.attempt, 1) - 1, 100)))
               * (1 - q.backoff_jitter * random()))
    FROM tasktable.queue q
    WHERE q.name = retry_delay.queue
$$;
COMMENT ON FUNCTION tasktable.retry_delay(text, integer) IS
    'Delay before retrying a task of this queue that failed attempt n: least(backoff_cap, backoff_base * '
    'backoff_factor^(n-1)), reduced by a random fraction up to backoff_jitter. NULL for an unknown queue.';


-- fail_tasks: the one implementation of failure. For each task still running under the given attempt:
-- dead if not retryable or its attempts are used up, otherwise queued again at retry_at (if given) or
-- after the queue's backoff. Locks the rows first, so the decision reads the current row.
CREATE FUNCTION tasktable.fail_tasks(
    ids       bigint[],
    attempts  integer[],
    errors    text[],
    retryable boolean[] DEFAULT NULL,
    retry_at  timestamptz[] DEFAULT NULL
)
RETURNS TABLE (id bigint, state tasktable.task_state)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM tasktable._check_task_refs(ids, attempts);
    IF cardinality(errors) IS DISTINCT FROM cardinality(ids)
       OR cardinality(retryable) <> cardinality(ids) OR cardinality(retry_at) <> cardinality(ids) THEN
        RAISE EXCEPTION 'tasktable: errors (and retryable, retry_at when given) must be as long as ids'
            USING ERRCODE = 'TT008', HINT = 'Pass one error message per task.';
    END IF;

    RETURN QUERY
    WITH held AS (
        SELECT cur.id, f.error,
               (NOT coalesce(f.retryable, true) OR cur.attempt >= coalesce(cur.max_attempts, q.max_attempts)) AS dead,
               greatest(now(), coalesce(f.retry_at, now() + tasktable.retry_delay(cur.queue, cur.attempt))) AS next_run_at
        FROM unnest(ids, attempts, errors, retryable, retry_at) AS f (id, attempt, error, retryable, retry_at)
        -- lease_expires_at IS NOT NULL means running; written so, it makes one task_pkey probe per id (see complete_tasks)
        JOIN tasktable.task cur ON cur.id = f.id AND cur.attempt = f.attempt AND cur.lease_expires_at IS NOT NULL
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
    WHERE t.id = held.id AND t.lease_expires_at IS NOT NULL
    RETURNING t.id, t.state;
END
$$;
COMMENT ON FUNCTION tasktable.fail_tasks(bigint[], integer[], text[], boolean[], timestamptz[]) IS
    'Record failed attempts (error text kept, first 10000 characters). Each task still running under its '
    'attempt goes back to queued after the queue''s backoff (or at retry_at), or dead when not retryable or '
    'out of attempts. Returns (id, new state) for the tasks changed; the others were no longer held. '
    'Errors: TT008 arrays, TT009 attempt.';

CREATE FUNCTION tasktable.fail_task(
    id        bigint,
    attempt   integer,
    error     text,
    retryable boolean DEFAULT true,
    retry_at  timestamptz DEFAULT NULL
)
RETURNS tasktable.task_state
LANGUAGE sql VOLATILE
RETURN (SELECT f.state FROM tasktable.fail_tasks(ARRAY[id], ARRAY[attempt], ARRAY[error], ARRAY[retryable], ARRAY[retry_at]) f);
COMMENT ON FUNCTION tasktable.fail_task(bigint, integer, text, boolean, timestamptz) IS
    'Record a failed attempt. Returns queued (will retry after backoff, or at retry_at), dead (not retryable '
    'or out of attempts), or NULL when the caller no longer holds this attempt (nothing changed).';


-- extend_lease: the heartbeat. Workers call it about every third of the lease for tasks still running.
CREATE FUNCTION tasktable.extend_lease(ids bigint[], attempts integer[], by interval DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    extended bigint[];
BEGIN
    PERFORM tasktable._check_task_refs(ids, attempts);
    IF by IS NOT NULL AND by NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'tasktable: lease extension must be between 1 second and 1 day, got %', by
            USING ERRCODE = 'TT007', HINT = 'Leave it NULL to extend by the queue''s lease.';
    END IF;

    WITH renewed AS (
        UPDATE tasktable.task t
        -- clock_timestamp(), not now(): a heartbeat that waited on a row lock longer than the lease would
        -- otherwise set a lease that had already run out, report success, and be rescued anyway.
        SET lease_expires_at = clock_timestamp() + coalesce(extend_lease.by, q.lease)
        FROM unnest(ids, attempts) AS h (id, attempt), tasktable.queue q
        -- lease_expires_at IS NOT NULL means running; written so, it makes one task_pkey probe per id (see complete_tasks)
        WHERE t.id = h.id AND t.attempt = h.attempt AND t.lease_expires_at IS NOT NULL AND q.name = t.queue
        RETURNING t.id
    )
    SELECT coalesce(array_agg(renewed.id), '{}') INTO extended FROM renewed;
    RETURN extended;
END
$$;
COMMENT ON FUNCTION tasktable.extend_lease(bigint[], integer[], interval) IS
    'Heartbeat: push the lease of running tasks to clock_timestamp() + by (NULL = the queue''s lease). Returns the ids '
    'extended; a missing id was lost (rescued, cancelled, re-claimed): stop working on it. Errors: TT007, TT008, TT009.';


-- snooze_task: the handler asks to run again later. Not a failure: the attempt does not count toward
-- max_attempts (the task's max_attempts is raised by one; from then on the task keeps its own limit
-- instead of following later changes of its queue's max_attempts).
CREATE FUNCTION tasktable.snooze_task(id bigint, attempt integer, delay interval)
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

    UPDATE tasktable.task t
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
COMMENT ON FUNCTION tasktable.snooze_task(bigint, integer, interval) IS
    'Put a running task back to queued, to run after delay, without using up an attempt (delay 0 hands it back '
    'and wakes idle workers). false when the caller no longer holds this attempt. Errors: TT007 delay, TT008, TT009.';


-- _lock_task: shared by the admin functions; locks the row or raises TT010.
CREATE FUNCTION tasktable._lock_task(task_id bigint)
RETURNS tasktable.task
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_task tasktable.task;
BEGIN
    SELECT t.* INTO found_task FROM tasktable.task t WHERE t.id = task_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tasktable: no task with id %', coalesce(task_id::text, 'NULL')
            USING ERRCODE = 'TT010', HINT = 'It may never have existed, or prune_tasks removed it after its retention.';
    END IF;
    RETURN found_task;
END
$$;
COMMENT ON FUNCTION tasktable._lock_task(bigint) IS 'Internal: lock a task row for an admin change, or raise TT010.';


-- cancel_task: queued or running -> cancelled. A running handler is not interrupted, but its completion
-- or failure is refused (the task is no longer running). Cancelling a cancelled task is a no-op.
CREATE FUNCTION tasktable.cancel_task(id bigint)
RETURNS tasktable.task_state
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur tasktable.task := tasktable._lock_task(cancel_task.id);
BEGIN
    IF cur.state IN ('succeeded', 'dead') THEN
        RAISE EXCEPTION 'tasktable: task % is % and cannot be cancelled', cur.id, cur.state
            USING ERRCODE = 'TT011', HINT = 'Only queued or running tasks can be cancelled.';
    END IF;
    UPDATE tasktable.task t
    SET state = 'cancelled', lease_expires_at = NULL, finished_at = coalesce(t.finished_at, now())
    WHERE t.id = cur.id;
    RETURN 'cancelled';
END
$$;
COMMENT ON FUNCTION tasktable.cancel_task(bigint) IS
    'Cancel a queued or running task (a running handler''s later completion is refused). Returns cancelled. '
    'Errors: TT010 unknown task, TT011 already succeeded or dead.';


-- retry_task: dead or cancelled -> queued, to run now. A task that had used all its attempts gets one more.
CREATE FUNCTION tasktable.retry_task(id bigint)
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
    SELECT t.id INTO twin FROM tasktable.task t
    WHERE t.queue = cur.queue AND t.dedup_key = cur.dedup_key AND t.state IN ('queued', 'running');
    IF FOUND THEN
        RAISE EXCEPTION 'tasktable: task % cannot be retried while task % with the same dedup_key is live', cur.id, twin
            USING ERRCODE = 'TT011', HINT = 'Wait for or cancel the live task first.';
    END IF;

    BEGIN
        UPDATE tasktable.task t
        SET state = 'queued',
            run_at = now(),
            finished_at = NULL,
            max_attempts = CASE WHEN t.attempt >= coalesce(t.max_attempts, q.max_attempts) THEN t.attempt + 1
                                ELSE t.max_attempts END
        FROM tasktable.queue q
        WHERE t.id = cur.id AND q.name = t.queue;
    EXCEPTION WHEN unique_violation THEN
        -- a concurrent transaction made a task with the same dedup_key live after the check above
        RAISE EXCEPTION 'tasktable: task % cannot be retried while another task with the same dedup_key is live', cur.id
            USING ERRCODE = 'TT011', HINT = 'Wait for or cancel the live task first.';
    END;
    PERFORM pg_notify('tasktable', cur.queue);
    RETURN 'queued';
END
$$;
COMMENT ON FUNCTION tasktable.retry_task(bigint) IS
    'Put a dead or cancelled task back to queued, to run now; if it had used all its attempts it gets one more. '
    'Returns queued. Errors: TT010 unknown task, TT011 not dead/cancelled or a live duplicate exists.';


-- rescue_expired_tasks: running tasks whose lease ran out (their worker died or froze) count as a failed
-- attempt with error 'lease expired' and follow fail_tasks: queued after backoff, or dead. Workers run it
-- periodically (one at a time); pg_cron can too. The old holder is fenced out by the attempt number.
CREATE FUNCTION tasktable.rescue_expired_tasks(max_rows integer DEFAULT 10000)
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
        SELECT t.id, t.attempt FROM tasktable.task t
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
COMMENT ON FUNCTION tasktable.rescue_expired_tasks(integer) IS
    'Recover running tasks whose lease expired (up to max_rows per call): each counts as a failed attempt '
    '(''lease expired'') and is queued after backoff or goes dead. Returns how many were rescued. Error: TT005.';


-- prune_tasks: retention. Deletes finished tasks older than their queue's retention (dead_retention for
-- dead tasks), at most max_rows per call so each call stays short; call it until it returns 0.
CREATE FUNCTION tasktable.prune_tasks(max_rows integer DEFAULT 10000)
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
            SELECT t.id FROM tasktable.task t
            WHERE t.queue = p.name AND t.state = p.state AND t.finished_at IS NOT NULL AND t.finished_at < p.cutoff
            LIMIT max_rows
            FOR UPDATE OF t SKIP LOCKED
        ) d
        LIMIT max_rows
    )
    DELETE FROM tasktable.task t USING doomed WHERE t.id = doomed.id;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;
COMMENT ON FUNCTION tasktable.prune_tasks(integer) IS
    'Delete finished tasks past their queue''s retention (dead_retention for dead ones), at most max_rows per '
    'call. Returns how many were deleted. Error: TT005.';


CREATE VIEW tasktable.queue_stats AS
SELECT q.name AS queue,
       q.paused,
       count(t.id) FILTER (WHERE t.state = 'queued') AS queued,
       count(t.id) FILTER (WHERE t.state = 'queued' AND t.run_at <= now()) AS ready,
       count(t.id) FILTER (WHERE t.state = 'running') AS running,
       count(t.id) FILTER (WHERE t.state = 'succeeded') AS succeeded,
       count(t.id) FILTER (WHERE t.state = 'dead') AS dead,
       count(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled,
       now() - min(t.run_at) FILTER (WHERE t.state = 'queued' AND t.run_at <= now()) AS oldest_ready_age
FROM tasktable.queue q
LEFT JOIN tasktable.task t ON t.queue = q.name
GROUP BY q.name, q.paused;
COMMENT ON VIEW tasktable.queue_stats IS
    'Per queue: tasks by state (ready = queued and due now), and how long the oldest ready task has waited.';


-- Serves the dashboard's throughput chart from task_finished_idx: finished tasks per queue and minute,
-- over the last hour (rows pruned by retention no longer count).
CREATE VIEW tasktable.task_throughput AS
SELECT q.name AS queue,
       date_trunc('minute', f.finished_at) AS minute,
       count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE f.state = 'dead') AS dead,
       count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled
FROM tasktable.queue q
CROSS JOIN unnest(ARRAY['succeeded', 'dead', 'cancelled']::tasktable.task_state[]) AS s (state)
CROSS JOIN LATERAL (
    SELECT t.state, t.finished_at FROM tasktable.task t
    WHERE t.queue = q.name AND t.state = s.state AND t.finished_at >= date_trunc('minute', now()) - interval '59 minutes'
) f
GROUP BY q.name, date_trunc('minute', f.finished_at);
COMMENT ON VIEW tasktable.task_throughput IS
    'Finished tasks per queue and minute over the last hour: succeeded, dead, cancelled.';
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '1', 'task queue core', 'SQL', 'V1__task_queue_core.sql', -1199154018, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V2__enqueue_ids_without_lookup.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '2' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 2: enqueue_tasks draws ids without a catalog lookup per task. Same signature, same behaviour.
-- bench enqueue, 1,000 tasks per call: 16-20 ms per call before, see docs/performance.md for after.

CREATE OR REPLACE FUNCTION tasktable.enqueue_tasks(specs tasktable.task_spec[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- The id sequence, looked up once: nextval(pg_get_serial_sequence(...)) looked it up for every task,
    -- 4.5 ms of a 1,000-task call (0.7 ms with the lookup done once; pgbench, one client).
    task_ids regclass := pg_get_serial_sequence('tasktable.task', 'id')::regclass;
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
        INSERT INTO tasktable.task (id, queue, kind, payload, run_at, priority, max_attempts, dedup_key)
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
                                  (SELECT live.id FROM tasktable.task live
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '2', 'enqueue ids without lookup', 'SQL', 'V2__enqueue_ids_without_lookup.sql', -447761829, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V3__plans_that_follow_the_ids.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '3' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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

INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '3', 'plans that follow the ids', 'SQL', 'V3__plans_that_follow_the_ids.sql', 1406783552, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V4__generic_plans_for_the_hot_functions.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '4' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 4: the functions a worker calls for every batch keep one plan per session instead of planning
-- each call. Same signatures, same behaviour.
--
-- PL/pgSQL plans a statement with its parameter values (a custom plan) until it decides a generic plan is as
-- good; for these statements it kept planning on every call. Planning cost more than running a small claim:
-- pgbench, one client, 200,000 queued tasks, claim_tasks + complete_tasks per transaction (ms per call):
--
--                       custom plans (before)   one generic plan (after)
--   claim of 1          0.71-1.17               0.29-0.65
--   claim of 10         0.93-1.41               0.62-0.87
--   complete_tasks      0.46-0.59               0.26-0.46
--
-- The generic plans cannot go wrong with the values: the claim's locked ids come as an array (migration V3) and
-- its ready tasks are read in task_claim_idx order whatever LIMIT the plan assumes (checked with 1,000,000 queued
-- tasks: EXPLAIN EXECUTE of the generic plan walks the index); the other three read only the ids they are given
-- (V3). jit = off: none of these statements is big enough to gain from JIT, and with enable_seqscan or
-- enable_nestloop off (V3) any plan that still had to use one would cost 10^10 and be JIT-compiled, about 150 ms
-- per call (seen with enable_sort = off on the claim).
-- CREATE OR REPLACE FUNCTION keeps only the SET clauses it names: a later migration that replaces one of these
-- functions must repeat these settings and V3's.
ALTER FUNCTION tasktable.claim_tasks(integer, text, text[], interval)
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.complete_tasks(bigint[], integer[], jsonb[])
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.fail_tasks(bigint[], integer[], text[], boolean[], timestamptz[])
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.extend_lease(bigint[], integer[], interval)
    SET plan_cache_mode = force_generic_plan SET jit = off;
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '4', 'generic plans for the hot functions', 'SQL', 'V4__generic_plans_for_the_hot_functions.sql', -2135770765, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V5__finished_tasks_leave_the_hot_table.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '5' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '5', 'finished tasks leave the hot table', 'SQL', 'V5__finished_tasks_leave_the_hot_table.sql', -462068905, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V6__unkept_tasks_are_deleted_as_they_complete.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '6' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '6', 'unkept tasks are deleted as they complete', 'SQL', 'V6__unkept_tasks_are_deleted_as_they_complete.sql', 1665374750, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V7__enqueue_checks_its_queues_once_per_call.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '7' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '7', 'enqueue checks its queues once per call', 'SQL', 'V7__enqueue_checks_its_queues_once_per_call.sql', 2069249758, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V8__retention_zero_in_the_catalog.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '8' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 8: what psql shows for retention and complete_tasks says what V6 made retention 0 do.
-- Comments only; no behaviour changes.

COMMENT ON COLUMN tasktable.queue.retention IS
    'prune_tasks deletes succeeded and cancelled tasks finished longer ago than this. At 0, complete_tasks deletes a succeeded task at once instead of keeping it (no history for that queue).';

COMMENT ON FUNCTION tasktable.complete_tasks(bigint[], integer[], jsonb[]) IS
    'Mark tasks succeeded, each only if still running under the given attempt (results optional). Returns the '
    'ids completed; an id missing from the result was no longer held by the caller (lease lost, cancelled) and '
    'was not changed. In a queue whose retention is 0 a completed task is deleted instead of kept. Errors: TT008 '
    'arrays, TT009 attempt.';

COMMENT ON TABLE tasktable.finished_task IS
    'Succeeded (unless their queue''s retention is 0), dead and cancelled tasks until prune_tasks deletes them. Change it only through the tasktable functions; read tasks from the view tasktable.task.';
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '8', 'retention zero in the catalog', 'SQL', 'V8__retention_zero_in_the_catalog.sql', 826586186, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V9__enqueue_keeps_one_plan_per_session.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '9' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 9: enqueue_tasks (and so enqueue_task and enqueue_tasks_json) keeps one plan per session instead of
-- planning each call, as the worker's batch functions do since V4. Same signature, same behaviour.
--
-- PL/pgSQL kept choosing custom plans for enqueue_tasks' statements, so every call planned them again: for one
-- task that planning was most of the call. pgbench on a 2-core machine whose bare single-row INSERT commits
-- 8,350/s from 8 clients (session 7), SELECT tasktable.enqueue_task('noop') per transaction, two alternating
-- pairs (tasks/s):
--
--                       custom plans (before)   one generic plan (after)
--   8 clients           1,487 / 1,420           2,271 / 1,989
--   1 client              810 / 917             1,451 / 1,234
--   4 clients, 1,000 per enqueue_tasks call     92,700 / 102,000   94,400 / 110,100
--   1 client, 10,000 per call (ms per call)     557 / 200          175 / 162
--
-- enable_seqscan = off: a generic plan is made once, from the statistics of that moment, and kept for the session.
-- Made when ANALYZE had seen live_task empty (a new install), it looked up an existing task's dedup key by a seq
-- scan of the whole table, on every later call of that session (200,000 tasks: 200,002 rows read per enqueue_task
-- with a dedup key; SchemaTest checks this). Every table enqueue_tasks reads, it reads by key (queue by name,
-- live_task by (queue, dedup_key) in task_dedup_idx), so no plan of it needs a seq scan. jit = off: none of its
-- statements gains from JIT, and a plan that still had to scan would cost 10^10 and be JIT-compiled (see V4).
-- CREATE OR REPLACE FUNCTION keeps only the SET clauses it names: a later migration that replaces enqueue_tasks
-- must repeat these.
ALTER FUNCTION tasktable.enqueue_tasks(tasktable.task_spec[])
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off;
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '9', 'enqueue keeps one plan per session', 'SQL', 'V9__enqueue_keeps_one_plan_per_session.sql', 1705084423, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V10__payload_check_without_serializing.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '10' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '10', 'payload check without serializing', 'SQL', 'V10__payload_check_without_serializing.sql', -1381168463, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V11__enqueue_task_inserts_one_row.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '11' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '11', 'enqueue task inserts one row', 'SQL', 'V11__enqueue_task_inserts_one_row.sql', 987091184, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V12__enqueue_batches_without_keys_insert_plainly.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '12' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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


INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '12', 'enqueue batches without keys insert plainly', 'SQL', 'V12__enqueue_batches_without_keys_insert_plainly.sql', 503690929, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V13__finished_tasks_that_did_not_succeed_are_indexed.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '13' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 13: the finished tasks that did not succeed (dead, cancelled) get an index of their own, so that a list
-- of them, newest first (GET /api/tasks?state=dead, the dashboard's dead tasks, an operator's SELECT ... FROM
-- tasktable.task WHERE state = 'dead' ORDER BY id DESC LIMIT n), reads them and not the whole history.
--
-- Without it the only way to such a page was finished_task's primary key, read backwards past every succeeded task,
-- or a scan of the table: 1,000,000 finished tasks of which 10 dead, SELECT * FROM tasktable.task WHERE state =
-- 'dead' ORDER BY id DESC LIMIT 51 took 116 ms (a parallel seq scan), 0.27 ms with this index (session 8).
--
-- Partial: a succeeded task, which every completion writes, never enters it (only the predicate is evaluated for
-- its row), so the completion's cost is unchanged; a failure that makes a task dead, or a cancel, adds one entry.
-- Building it reads finished_task once and holds its write lock meanwhile (150 ms for 1,000,000 rows): completions
-- wait that long during the upgrade.
CREATE INDEX finished_task_unsuccessful_idx ON tasktable.finished_task (id) WHERE state <> 'succeeded';
COMMENT ON INDEX tasktable.finished_task_unsuccessful_idx IS
    'Dead and cancelled tasks by id: lists of them, newest first, without reading the succeeded history.';
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '13', 'finished tasks that did not succeed are indexed', 'SQL', 'V13__finished_tasks_that_did_not_succeed_are_indexed.sql', 1011309061, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V14__enqueue_reads_its_specs_in_fewer_passes.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '14' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '14', 'enqueue reads its specs in fewer passes', 'SQL', 'V14__enqueue_reads_its_specs_in_fewer_passes.sql', 1610799532, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V15__claim_and_completion_do_less_per_task.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '15' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '15', 'claim and completion do less per task', 'SQL', 'V15__claim_and_completion_do_less_per_task.sql', 1108461095, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V16__completion_without_a_join_when_attempts_agree.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '16' AND success) AS tasktable_apply \gset
\if :tasktable_apply
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
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '16', 'completion without a join when attempts agree', 'SQL', 'V16__completion_without_a_join_when_attempts_agree.sql', -733806017, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

-- ================================================================================================
-- V17__live_task_rebuilt_for_cheaper_updates.sql
SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '17' AND success) AS tasktable_apply \gset
\if :tasktable_apply
-- tasktable 17: live_task built again for cheaper updates: its columns in the order updates read them, and the
-- checks of the columns that no update changes on those columns' types. Same columns, names, defaults, indexes,
-- grants and comments; the same values accepted and refused; same functions, results and errors.
--
-- Every claim is an UPDATE of live_task (and so are heartbeats, rescues, retries and snoozes), and PostgreSQL does
-- two things on every updated row that this table made costly:
--
-- 1. It finds columns by walking the row from its start, unless every column before the one wanted has a fixed
--    width and is not NULL: then the offset is known for the table and read directly. live_task had its text
--    columns (queue, kind, payload) second to fourth, so every column after them was found by walking: to decide
--    whether the update can be HOT, PostgreSQL compares each indexed column of the old row with the new one (id,
--    priority, run_at, state, lease_expires_at, queue, dedup_key: 14 reads per task), and the CHECKs and NOT NULLs
--    read the new row. Here the fixed-width columns come first (the NOT NULL ones, then the two timestamps a claim
--    sets), then the text, then the columns that are mostly NULL.
-- 2. It evaluates every CHECK of the table, whichever columns the UPDATE sets, and reads each CHECK's expression
--    again for every statement. Six of live_task's nine checked only kind, payload, priority, dedup_key or result,
--    which no update changes: they are now on domain types (tasktable.task_kind, task_payload, task_priority,
--    task_dedup_key, task_result), checked whenever a value is written to such a column (every INSERT, and an
--    UPDATE that sets one) and not on updates of other columns. The constraints keep their names; a value they
--    refuse is refused with the same SQLSTATE (23514), as "value for domain ... violates check constraint ...".
--    The three that relate columns a claim sets (attempt_within_max, running_has_lease, live_task_state) stay on
--    the table. Reads see the base types: the view task and the functions return text, jsonb and integer as before.
--
-- Counted by docs/instructions.sh (claim_tasks of 128 then complete_tasks, instructions per task of the server;
-- docs/performance.md, item 45): V16 125,237; the new column order 122,817 (-1.9%); and the domains 119,116 (-4.9% in
-- all). finished_task keeps its order and its types: its rows are written once and never updated, and rebuilding it
-- would copy the whole history during the upgrade.
--
-- PostgreSQL cannot reorder a table's columns, so the table is built again: a new live_task, the rows copied, the
-- views pointed at it, the old table dropped. The upgrade takes an ACCESS EXCLUSIVE lock on live_task and
-- finished_task for as long as the copy takes (live_task holds only queued and running tasks). Objects of your own
-- that depend on live_task (a view, a foreign key to it) make the DROP fail and the upgrade roll back: drop them
-- first and create them again after. The table's owner, its storage options (and its TOAST table's), its columns'
-- statistics targets, the grants on it and on task_id_seq and the comments are carried over; column-level grants
-- and options set on its indexes are not.

LOCK TABLE tasktable.live_task, tasktable.finished_task IN ACCESS EXCLUSIVE MODE;

ALTER TABLE tasktable.live_task RENAME TO live_task_v16;
ALTER INDEX tasktable.task_pkey RENAME TO live_task_v16_pkey;
ALTER INDEX tasktable.task_claim_idx RENAME TO live_task_v16_claim_idx;
ALTER INDEX tasktable.task_dedup_idx RENAME TO live_task_v16_dedup_idx;
ALTER INDEX tasktable.task_lease_idx RENAME TO live_task_v16_lease_idx;

CREATE DOMAIN tasktable.task_kind AS text
    CONSTRAINT kind_valid CHECK (length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN tasktable.task_payload AS jsonb
    CONSTRAINT payload_object_or_array CHECK (jsonb_typeof(VALUE) IN ('object', 'array'))
    -- the stored size first (V10): a payload under 1 MB stored is under 1 MB as text too (jsonb is the larger)
    CONSTRAINT payload_size_limit CHECK (pg_column_size(VALUE) <= 1048576 OR octet_length(VALUE::text) <= 1048576);
CREATE DOMAIN tasktable.task_priority AS integer
    CONSTRAINT priority_in_range CHECK (VALUE BETWEEN -1000 AND 1000);
CREATE DOMAIN tasktable.task_dedup_key AS text
    CONSTRAINT dedup_key_valid CHECK (length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN tasktable.task_result AS jsonb
    CONSTRAINT result_size_limit CHECK (octet_length(VALUE::text) <= 1048576);
COMMENT ON DOMAIN tasktable.task_kind IS 'live_task.kind: 1 to 255 characters.';
COMMENT ON DOMAIN tasktable.task_payload IS 'live_task.payload: a JSON object or array, at most 1 MB as text.';
COMMENT ON DOMAIN tasktable.task_priority IS 'live_task.priority: -1000 to 1000, higher runs first.';
COMMENT ON DOMAIN tasktable.task_dedup_key IS 'live_task.dedup_key: 1 to 255 characters.';
COMMENT ON DOMAIN tasktable.task_result IS 'live_task.result: at most 1 MB as text.';

CREATE TABLE tasktable.live_task (
    -- fixed width and NOT NULL: read at an offset known for the table
    id               bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME tasktable.task_id_seq_v17)
                     CONSTRAINT task_pkey PRIMARY KEY,
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    priority         tasktable.task_priority NOT NULL DEFAULT 0,
    attempt          integer NOT NULL DEFAULT 0,
    state            tasktable.task_state NOT NULL DEFAULT 'queued',
    -- fixed width, set by the claim
    lease_expires_at timestamptz,
    started_at       timestamptz,
    -- text
    queue            text NOT NULL,
    kind             tasktable.task_kind NOT NULL,
    payload          tasktable.task_payload NOT NULL DEFAULT '{}',
    -- mostly NULL
    max_attempts     integer,
    dedup_key        tasktable.task_dedup_key,
    worker           text,
    last_error       text,
    result           tasktable.task_result,
    finished_at      timestamptz,
    CONSTRAINT attempt_within_max CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT running_has_lease CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
    CONSTRAINT live_task_state CHECK (state IN ('queued', 'running') AND finished_at IS NULL)
);

-- The storage settings of the old table, before the rows come in (a fillfactor decides how they are packed): its
-- options and its TOAST table's (docs/dba-guide.md suggests autovacuum settings and a fillfactor for live_task), and
-- each column's statistics target. The indexes are built with the defaults.
DO $$
DECLARE
    old_table oid := 'tasktable.live_task_v16'::regclass;
    options   text;
    c         record;
BEGIN
    SELECT string_agg(o.prefix || quote_ident(split_part(o.option, '=', 1)) || ' = '
                      || quote_literal(substr(o.option, strpos(o.option, '=') + 1)), ', ')
    INTO options
    FROM (SELECT '' AS prefix, unnest(t.reloptions) AS option FROM pg_class t WHERE t.oid = old_table
          UNION ALL
          SELECT 'toast.', unnest(t.reloptions) FROM pg_class h JOIN pg_class t ON t.oid = h.reltoastrelid
          WHERE h.oid = old_table) o;
    IF options IS NOT NULL THEN
        EXECUTE format('ALTER TABLE tasktable.live_task SET (%s)', options);
    END IF;
    FOR c IN
        SELECT a.attname, a.attstattarget FROM pg_attribute a
        WHERE a.attrelid = old_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget >= 0
    LOOP
        EXECUTE format('ALTER TABLE tasktable.live_task ALTER COLUMN %I SET STATISTICS %s', c.attname, c.attstattarget);
    END LOOP;
END
$$;

INSERT INTO tasktable.live_task (id, run_at, created_at, priority, attempt, state, lease_expires_at, started_at, queue,
                                 kind, payload, max_attempts, dedup_key, worker, last_error, result, finished_at)
OVERRIDING SYSTEM VALUE
SELECT id, run_at, created_at, priority, attempt, state, lease_expires_at, started_at, queue, kind, payload,
       max_attempts, dedup_key, worker, last_error, result, finished_at
FROM tasktable.live_task_v16;

-- The ids go on where they were; finished_task's default (for a DBA importing history) follows the sequence.
DO $$
BEGIN
    PERFORM setval('tasktable.task_id_seq_v17', s.last_value, s.is_called) FROM tasktable.task_id_seq s;
END
$$;
ALTER TABLE tasktable.finished_task ALTER COLUMN id SET DEFAULT nextval('tasktable.task_id_seq_v17');

-- The indexes of V1, unchanged.
CREATE INDEX task_claim_idx ON tasktable.live_task (priority DESC, run_at, id) WHERE state = 'queued';
CREATE UNIQUE INDEX task_dedup_idx ON tasktable.live_task (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX task_lease_idx ON tasktable.live_task (lease_expires_at) WHERE state = 'running';

-- The trigger of V15, unchanged.
CREATE TRIGGER task_moves_to_a_known_queue AFTER UPDATE OF queue ON tasktable.live_task
    FOR EACH ROW WHEN (OLD.queue IS DISTINCT FROM NEW.queue) EXECUTE FUNCTION tasktable._check_task_queue();

-- Owner, grants and comments as the old table had them (the DBA guide's roles grant on the table and the sequence).
DO $$
DECLARE
    old_table    oid := 'tasktable.live_task_v16'::regclass;
    old_sequence oid := 'tasktable.task_id_seq'::regclass;
    owner        name := (SELECT c.relowner::regrole::text FROM pg_class c WHERE c.oid = old_table);
    g            record;
BEGIN
    IF owner <> current_user THEN
        EXECUTE format('ALTER TABLE tasktable.live_task OWNER TO %s', owner);
    END IF;
    FOR g IN
        SELECT 'TABLE tasktable.live_task' AS target, a.privilege_type, a.grantee, a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = old_table
        UNION ALL
        SELECT 'SEQUENCE tasktable.task_id_seq_v17', a.privilege_type, a.grantee, a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = old_sequence
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, g.target,
                       CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    EXECUTE format('COMMENT ON TABLE tasktable.live_task IS %L', obj_description(old_table, 'pg_class'));
    FOR g IN
        SELECT a.attname, d.description
        FROM pg_attribute a JOIN pg_description d ON d.objoid = a.attrelid AND d.objsubid = a.attnum
        WHERE a.attrelid = old_table AND d.classoid = 'pg_class'::regclass
    LOOP
        EXECUTE format('COMMENT ON COLUMN tasktable.live_task.%I IS %L', g.attname, g.description);
    END LOOP;
END
$$;

-- The views read the new table; their columns and grants stay as they were. task keeps its column order and its
-- types (the base types of the domains), which are the row type claim_tasks and _lock_task return.
CREATE OR REPLACE VIEW tasktable.task AS
SELECT id, queue, kind::text, payload::jsonb, state, priority::integer, run_at, attempt, max_attempts,
       dedup_key::text, worker, lease_expires_at, last_error, result::jsonb, created_at, started_at, finished_at
FROM tasktable.live_task
UNION ALL
SELECT id, queue, kind, payload, state, priority, run_at, attempt, max_attempts, dedup_key, worker, lease_expires_at,
       last_error, result, created_at, started_at, finished_at
FROM tasktable.finished_task;

-- as V5
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

DROP TABLE tasktable.live_task_v16; -- and with it its identity sequence, tasktable.task_id_seq
ALTER SEQUENCE tasktable.task_id_seq_v17 RENAME TO task_id_seq;
ANALYZE tasktable.live_task;


-- _lock_task: as V5, the live row read by column name (its columns are no longer in the view's order).
CREATE OR REPLACE FUNCTION tasktable._lock_task(task_id bigint)
RETURNS tasktable.task
LANGUAGE plpgsql AS $$
DECLARE
    found_task tasktable.task;
BEGIN
    FOR round IN 1..3 LOOP
        SELECT t.id, t.queue, t.kind, t.payload, t.state, t.priority, t.run_at, t.attempt, t.max_attempts, t.dedup_key,
               t.worker, t.lease_expires_at, t.last_error, t.result, t.created_at, t.started_at, t.finished_at
        INTO found_task FROM tasktable.live_task t WHERE t.id = task_id FOR UPDATE;
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


-- claim_tasks: as V15, the claimed rows returned by column name (in the view's order and types).
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
        RETURNING t.id, t.queue, t.kind::text, t.payload::jsonb, t.state, t.priority::integer, t.run_at, t.attempt,
                  t.max_attempts, t.dedup_key::text, t.worker, t.lease_expires_at, t.last_error, t.result::jsonb,
                  t.created_at, t.started_at, t.finished_at
    )
    SELECT * FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;
INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT coalesce(max(installed_rank), 0) + 1, '17', 'live task rebuilt for cheaper updates', 'SQL', 'V17__live_task_rebuilt_for_cheaper_updates.sql', -600243870, current_user, 0, true FROM tasktable.flyway_schema_history;
\endif

COMMIT;
