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
