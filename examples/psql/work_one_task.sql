-- A worker loop for one task, in plain psql: claim, do the work, report with the attempt number.
--
--   psql "$DATABASE_URL" -f examples/psql/work_one_task.sql
--
-- Here "the work" is a SQL statement; a real worker runs code between the claim and the report, and
-- calls tasktable.extend_lease(ARRAY[id], ARRAY[attempt]) every third of the lease if it runs long.
\set ON_ERROR_STOP on
-- One row either way (\gset needs a row): claimed is false when no task was ready.
SELECT c.id IS NOT NULL AS claimed, c.id, c.kind, c.attempt, c.payload ->> 'to' AS recipient
FROM (VALUES (1)) AS one (x)
LEFT JOIN tasktable.claim_tasks(1, 'psql-example', ARRAY['default']) AS c ON true \gset task_
\if :task_claimed
    \echo claimed task :task_id (:task_kind), attempt :task_attempt
    -- the work, idempotent by task id: a retried attempt finds its row already there
    CREATE TABLE IF NOT EXISTS example_outbox (task_id bigint PRIMARY KEY, recipient text NOT NULL);
    INSERT INTO example_outbox (task_id, recipient) VALUES (:task_id, :'task_recipient') ON CONFLICT DO NOTHING;
    -- success; on an error a worker calls instead: SELECT tasktable.fail_task(:task_id, :task_attempt, 'what went wrong');
    SELECT tasktable.complete_task(:task_id, :task_attempt, '{"by": "psql"}') AS completed;
\else
    \echo no task ready
\endif
