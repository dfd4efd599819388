package io.tasktable.testing;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;

import io.tasktable.ConnectionPool;
import io.tasktable.DatabaseUrl;
import io.tasktable.TaskHandler;
import io.tasktable.TaskResult;

/**
 * Table {@code side_effect} of the test database: a handler's visible effect, one row per task (UNIQUE), and a
 * counter of executions past the first, so "exactly once" is checked by the database across processes. Every
 * execution is also appended to {@code side_effect_log} (task id, attempt, process), which the fault suite's
 * accounting reads.
 */
public final class SideEffects implements AutoCloseable {

    private final ConnectionPool pool;

    private SideEffects(ConnectionPool pool) {
        this.pool = pool;
    }

    /** Empties (re)creates the table; its own pool, so killing a worker's connections leaves it alone. */
    public static SideEffects create(TestDatabase db) throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS side_effect, side_effect_log");
            s.execute("CREATE TABLE side_effect (task_id bigint NOT NULL, attempt int NOT NULL, "
                    + "duplicates int NOT NULL DEFAULT 0, UNIQUE (task_id))");
            s.execute("CREATE TABLE side_effect_log (task_id bigint NOT NULL, attempt int NOT NULL, "
                    + "pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
        }
        return attach(db.url());
    }

    /** Records into tables made by {@link #create} (e.g. from a worker process of its own). */
    public static SideEffects attach(DatabaseUrl url) {
        return new SideEffects(ConnectionPool.open(url, "tasktable-test-effects", 10));
    }

    /** Records the effect, then succeeds. */
    public TaskHandler handler() {
        return handler(Duration.ZERO);
    }

    /** Works for a while (interruptibly), records the effect, then succeeds. */
    public TaskHandler handler(Duration work) {
        return (task, context) -> {
            Thread.sleep(work);
            record(task.id(), task.attempt());
            return TaskResult.success();
        };
    }

    /** The effect of one execution: both tables, in one statement. */
    public void record(long taskId, int attempt) throws SQLException {
        try (Connection c = pool.dataSource().getConnection();
             PreparedStatement ps = c.prepareStatement("WITH logged AS (INSERT INTO side_effect_log (task_id, attempt, pid) "
                     + "VALUES (?, ?, ?)) INSERT INTO side_effect (task_id, attempt) VALUES (?, ?) "
                     + "ON CONFLICT (task_id) DO UPDATE SET duplicates = side_effect.duplicates + 1")) {
            ps.setLong(1, taskId);
            ps.setInt(2, attempt);
            ps.setLong(3, ProcessHandle.current().pid());
            ps.setLong(4, taskId);
            ps.setInt(5, attempt);
            ps.executeUpdate();
        }
    }

    /** Tasks whose effect happened at least once. */
    public long count(Connection c) throws SQLException {
        return Sql.count(c, "SELECT count(*) FROM side_effect");
    }

    /** Executions past the first, over all tasks. */
    public long duplicates(Connection c) throws SQLException {
        return Sql.count(c, "SELECT coalesce(sum(duplicates), 0) FROM side_effect");
    }

    @Override
    public void close() {
        pool.close();
    }
}
