-- Enqueue in the same transaction as the business write (a transactional outbox), from psql:
--
--   psql "$DATABASE_URL" -v email=ada@example.com -f examples/psql/enqueue_in_transaction.sql
--
-- The task exists if and only if the signup row does; idle workers are woken by NOTIFY at COMMIT.
\set ON_ERROR_STOP on
CREATE TABLE IF NOT EXISTS example_signup (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

BEGIN;
INSERT INTO example_signup (email) VALUES (:'email');
SELECT tasktable.enqueue_task('send_welcome_email', jsonb_build_object('to', :'email')) AS task_id;
COMMIT;
