package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.sql.SQLException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.Worker;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/** Scenario 6: cancel, retry and policy changes while tasks run; the queue paused in the middle of a drain. */
@Tag("faults")
@ExtendWith(TestDatabase.Extension.class)
class AdminFaultsTest {

    private static final Set<String> CONFLICT = Set.of("TT011");

    private final TestDatabase db;

    AdminFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void cancels_retries_policy_changes_and_a_pause_during_a_drain_keep_the_accounts_straight() throws Exception {
        int tasks = Faults.count(1_000, 10_000);
        int rounds = Faults.count(10, 50);
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-admin", ConnectionPool.DEFAULT_SIZE)) {
            List<Long> ids = h.enqueueRecords(tasks, 5);
            int cancelled = 0;
            int retried = 0;
            int refused = 0;
            Duration pauseRecovery;
            try (Worker worker = Worker.start(pool, FaultWorkerMain.handlers(h.effects), Workers.FAST.withConcurrency(16))) {
                for (int round = 0; round < rounds; round++) {
                    within(Duration.ofSeconds(30)).until(() -> h.count("state = 'running'") > 0 || h.unfinished(ids) == 0);
                    for (Map<String, Object> row : Sql.rows(h.c, "SELECT id FROM tasktable.task WHERE state = 'running' "
                            + "ORDER BY random() LIMIT 3")) {
                        if (admin(h, "SELECT tasktable.cancel_task(?)", row.get("id"))) {
                            cancelled++;
                        } else {
                            refused++;
                        }
                    }
                    for (Map<String, Object> row : Sql.rows(h.c, "SELECT id FROM tasktable.task WHERE state = 'cancelled' "
                            + "ORDER BY random() LIMIT 2")) {
                        if (admin(h, "SELECT tasktable.retry_task(?)", row.get("id"))) {
                            retried++;
                        } else {
                            refused++;
                        }
                    }
                    Sql.update(h.c, "UPDATE tasktable.queue SET max_attempts = ?, lease = ?::interval, "
                            + "backoff_base = ?::interval, backoff_cap = ?::interval", 5 + round % 20, (2 + round % 5) + " seconds",
                            (10 + round) + " milliseconds", (10 + round) + " milliseconds");
                    if (round == rounds / 2) {
                        Sql.update(h.c, "UPDATE tasktable.queue SET paused = true");
                        Object pausedAt = Sql.value(h.c, "SELECT clock_timestamp()");
                        within(Duration.ofSeconds(30)).until(() -> h.count("state = 'running'") == 0);
                        long startedAfterPause = h.count("started_at > ?", pausedAt);
                        assertThat(startedAfterPause).as("claims while the queue is paused").isZero();
                        Sql.update(h.c, "UPDATE tasktable.queue SET paused = false");
                        long resumedAt = System.nanoTime();
                        within(Duration.ofSeconds(30)).until(() -> h.count("started_at > ?", pausedAt) > 0);
                        pauseRecovery = Duration.ofNanos(System.nanoTime() - resumedAt);
                        System.out.println("paused drain resumed after " + pauseRecovery.toMillis() + " ms");
                    }
                }
                within(Duration.ofMinutes(2)).until(() -> h.unfinished(ids) == 0);
            }
            Ledger.Result result = h.ledger.account("6 admin races (" + cancelled + " cancels, " + retried + " retries, "
                    + refused + " refused, pause)", rounds, ids, Duration.ZERO);
            assertThat(cancelled).isPositive();
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(h.ledger.states(ids).keySet()).isSubsetOf("succeeded", "cancelled");
            assertThat(h.ledger.states(ids).values().stream().mapToLong(Long::longValue).sum()).isEqualTo(tasks);
        }
    }

    /** Runs an admin call; false when it lost a race (TT011: the task changed state first). */
    private static boolean admin(FaultHarness h, String sql, Object id) throws SQLException {
        try {
            Sql.value(h.c, sql, id);
            return true;
        } catch (SQLException e) {
            if (CONFLICT.contains(e.getSQLState())) {
                return false;
            }
            throw e;
        }
    }
}
