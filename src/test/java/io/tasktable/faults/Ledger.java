package io.tasktable.faults;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * The accounting invariant of the fault suite. Installs, for one scenario, a trigger that logs every change of a
 * task into a final state, and every deletion of a finished one by prune_tasks ({@code final_transition}); the
 * handlers log every execution in
 * {@code side_effect_log} ({@link io.tasktable.testing.SideEffects}). {@link #account} then compares the
 * enqueued ids with the final states and both logs: every task is in exactly one final state (or still queued,
 * or running under a valid lease), none completed twice, none lost, and how often each one ran.
 */
final class Ledger implements AutoCloseable {

    /** The result rows of this run, for docs/reliability.md. */
    static final Path RESULTS = Path.of("target", "fault-results.md");

    record Result(String scenario, int runs, long tasks, long lost, long completedTwice, long executedMoreThanOnce,
                  Map<Integer, Long> executions, Duration recovery) {

        String row() {
            return String.format("| %s | %d | %d | %d | %d | %d | %s | %s |", scenario, runs, tasks, lost, completedTwice,
                    executedMoreThanOnce, executions, recovery.isZero() ? "-" : recovery.toMillis() + " ms");
        }
    }

    /** Each call opens its own connection, so the ledger outlives a database restart. */
    private final TestDatabase db;

    private Ledger(TestDatabase db) {
        this.db = db;
    }

    /** Starts a scenario's accounting; the caller has made the side effect tables (SideEffects.create). */
    static Ledger open(TestDatabase db) throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS final_transition");
            s.execute("CREATE TABLE final_transition (task_id bigint NOT NULL, attempt int NOT NULL, "
                    + "state text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
            // A task enters a final state by moving into finished_task (migration V5), and leaves it by prune_tasks
            // or by retry_task, which moves it back to live_task in the same statement (logged as retried).
            s.execute("""
                    CREATE OR REPLACE FUNCTION public.log_final_transition() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF TG_OP = 'DELETE' THEN
                            INSERT INTO public.final_transition (task_id, attempt, state)
                            VALUES (OLD.id, OLD.attempt, CASE WHEN EXISTS (SELECT FROM tasktable.live_task l WHERE l.id = OLD.id)
                                                              THEN 'retried' ELSE 'pruned' END);
                        ELSE
                            INSERT INTO public.final_transition (task_id, attempt, state) VALUES (NEW.id, NEW.attempt, NEW.state);
                        END IF;
                        RETURN NULL;
                    END $$""");
            s.execute("DROP TRIGGER IF EXISTS fault_ledger ON tasktable.finished_task");
            s.execute("CREATE TRIGGER fault_ledger AFTER INSERT ON tasktable.finished_task FOR EACH ROW "
                    + "EXECUTE FUNCTION public.log_final_transition()");
            s.execute("DROP TRIGGER IF EXISTS fault_ledger_prune ON tasktable.finished_task");
            s.execute("CREATE TRIGGER fault_ledger_prune AFTER DELETE ON tasktable.finished_task FOR EACH ROW "
                    + "EXECUTE FUNCTION public.log_final_transition()");
        }
        return new Ledger(db);
    }

    /**
     * Checks the invariant for the enqueued ids and returns the scenario's row. Lost: a task missing (and not
     * pruned after it finished), stuck running under an expired lease, or succeeded without its side effect; completed twice: more than one
     * change into succeeded; executed more than once: more than one side effect logged.
     */
    Result account(String scenario, int runs, List<Long> ids, Duration recovery) throws SQLException {
        try (Connection c = db.connect()) {
            return account(c, scenario, runs, ids, recovery);
        }
    }

    private static Result account(Connection c, String scenario, int runs, List<Long> ids, Duration recovery)
            throws SQLException {
        Long[] enqueued = ids.toArray(Long[]::new);
        long missing = Sql.count(c, "SELECT count(*) FROM unnest(?::bigint[]) i (id) "
                + "WHERE NOT EXISTS (SELECT FROM tasktable.task t WHERE t.id = i.id) "
                + "AND NOT EXISTS (SELECT FROM final_transition f WHERE f.task_id = i.id AND f.state = 'pruned')", (Object) enqueued);
        long stuck = Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ANY (?) "
                + "AND state = 'running' AND lease_expires_at < now()", (Object) enqueued);
        long effectless = Sql.count(c, "SELECT count(*) FROM final_transition f WHERE f.task_id = ANY (?) "
                + "AND f.state = 'succeeded' AND NOT EXISTS (SELECT FROM side_effect_log l WHERE l.task_id = f.task_id)",
                (Object) enqueued);
        long completedTwice = Sql.count(c, "SELECT count(*) FROM (SELECT task_id FROM final_transition "
                + "WHERE state = 'succeeded' GROUP BY task_id HAVING count(*) > 1) twice");
        long phantom = Sql.count(c, "SELECT count(DISTINCT task_id) FROM side_effect_log WHERE NOT task_id = ANY (?)",
                (Object) enqueued);
        Map<Integer, Long> executions = new TreeMap<>();
        for (Map<String, Object> row : Sql.rows(c, "SELECT coalesce(n, 0)::int AS runs, count(*) AS tasks "
                + "FROM unnest(?::bigint[]) i (id) LEFT JOIN (SELECT task_id, count(*) AS n FROM side_effect_log "
                + "GROUP BY task_id) l ON l.task_id = i.id GROUP BY 1 ORDER BY 1", (Object) enqueued)) {
            executions.put((Integer) row.get("runs"), ((Number) row.get("tasks")).longValue());
        }
        long more = executions.entrySet().stream().filter(e -> e.getKey() > 1).mapToLong(Map.Entry::getValue).sum();
        Result result = new Result(scenario, runs, ids.size(), missing + stuck + effectless + phantom, completedTwice,
                more, executions, recovery);
        String row = result.row();
        System.out.println("FAULT " + row);
        try {
            Files.createDirectories(RESULTS.getParent());
            Files.writeString(RESULTS, row + System.lineSeparator(), StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new IllegalStateException("cannot append to " + RESULTS, e);
        }
        return result;
    }

    /** Task counts by state among the ids. */
    Map<String, Long> states(List<Long> ids) throws SQLException {
        Map<String, Long> states = new TreeMap<>();
        try (Connection c = db.connect()) {
            for (Map<String, Object> row : Sql.rows(c, "SELECT state::text AS state, count(*) AS n FROM tasktable.task "
                    + "WHERE id = ANY (?) GROUP BY state", (Object) ids.toArray(Long[]::new))) {
                states.put((String) row.get("state"), ((Number) row.get("n")).longValue());
            }
        }
        return states;
    }

    @Override
    public void close() throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("DROP TRIGGER IF EXISTS fault_ledger ON tasktable.finished_task");
            s.execute("DROP TRIGGER IF EXISTS fault_ledger_prune ON tasktable.finished_task");
            s.execute("DROP FUNCTION IF EXISTS public.log_final_transition()");
        }
    }
}
