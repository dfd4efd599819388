package io.tasktable.testing;

import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.List;

import io.tasktable.WorkerOptions;

/** What the worker tests share: fast options and signals read from the database. */
public final class Workers {

    /** Retries and future tasks are found by polling: poll often so tests do not wait a second each. */
    public static final WorkerOptions FAST = WorkerOptions.defaults()
            .withPollInterval(Duration.ofMillis(50))
            .withRescueInterval(Duration.ofMillis(100))
            .withShutdownGrace(Duration.ofSeconds(5));

    private Workers() {
    }

    /** Retries after 10 ms instead of the default seconds. */
    public static void fastBackoff(Connection c) throws SQLException {
        Sql.update(c, "UPDATE tasktable.queue SET backoff_base = '10 milliseconds', backoff_cap = '10 milliseconds'");
    }

    /** Backends with this application name that have run LISTEN: a worker's listener, ready for NOTIFY. */
    public static List<Integer> listeningBackends(Connection c, String applicationName) throws SQLException {
        return Sql.rows(c, "SELECT pid FROM pg_stat_activity WHERE application_name = ? AND query = 'LISTEN tasktable'",
                        applicationName)
                .stream().map(row -> (Integer) row.get("pid")).toList();
    }

    /** Terminates every backend with this application name; returns their pids. */
    public static List<Integer> terminateBackends(Connection c, String applicationName) throws SQLException {
        return Sql.rows(c, "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
                        applicationName)
                .stream().map(row -> (Integer) row.get("pid")).toList();
    }
}
