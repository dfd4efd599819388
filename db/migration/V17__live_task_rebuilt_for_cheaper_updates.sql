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
