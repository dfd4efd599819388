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
