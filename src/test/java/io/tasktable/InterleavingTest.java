package io.tasktable;

import static io.tasktable.testing.SqlStates.assertSqlState;
import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * Two sessions interleaved on purpose (one holds its transaction open while the other acts), and the
 * edge cases found in review. Plain SQL, like any client.
 */
@ExtendWith(TestDatabase.Extension.class)
@Timeout(30) // a lost SKIP LOCKED shows up as one session waiting on the other forever
class InterleavingTest {

    private final TestDatabase db;
    private Connection a;
    private Connection b;

    InterleavingTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void twoSessions() throws SQLException {
        db.reset();
        a = db.connect();
        b = db.connect();
    }

    @AfterEach
    void close() throws SQLException {
        a.close();
        b.close();
    }

    private static long running(Connection c, String kind) throws SQLException {
        long id = (Long) Sql.value(c, "SELECT tasktable.enqueue_task(?)", kind);
        Sql.rows(c, "SELECT id FROM tasktable.claim_tasks(1, 'w')");
        return id;
    }

    @Test
    void rescue_skips_a_task_whose_heartbeat_is_in_flight() throws SQLException {
        long id = running(a, "long");
        Sql.update(a, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", id);

        a.setAutoCommit(false);
        assertThat(Sql.value(a, "SELECT cardinality(tasktable.extend_lease(ARRAY[?]::bigint[], '{1}'))", id)).isEqualTo(1);
        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).as("while the heartbeat is uncommitted").isEqualTo(0);
        a.commit();
        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).as("after it committed").isEqualTo(0);

        assertThat(Sql.state(b, id)).isEqualTo("running");
    }

    @Test
    void a_heartbeat_late_in_its_transaction_still_gets_a_full_lease() throws SQLException {
        long id = running(a, "long");

        a.setAutoCommit(false);
        // now() is fixed when the transaction starts; this stands for a heartbeat that waited on a row lock
        // for longer than the lease (the pause is the fault being reproduced, not a wait for a condition).
        Sql.rows(a, "SELECT pg_sleep(1.2)");
        assertThat(Sql.value(a, "SELECT cardinality(tasktable.extend_lease(ARRAY[?]::bigint[], '{1}', interval '1 second'))", id))
                .isEqualTo(1);
        assertThat(Sql.value(a, "SELECT lease_expires_at > clock_timestamp() FROM tasktable.task WHERE id = ?", id))
                .as("the new lease has not already run out").isEqualTo(true);
        a.commit();

        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).isEqualTo(0);
        assertThat(Sql.state(b, id)).isEqualTo("running");
    }

    @Test
    void a_completion_committed_while_rescue_waits_stays_completed() throws Exception {
        long id = running(a, "job");
        Sql.update(a, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", id);

        a.setAutoCommit(false);
        assertThat(Sql.value(a, "SELECT tasktable.complete_task(?, 1)", id)).isEqualTo(true);
        // rescue skips the locked row instead of waiting for it
        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).isEqualTo(0);
        a.commit();

        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).isEqualTo(0);
        assertThat(Sql.state(b, id)).isEqualTo("succeeded");
    }

    @Test
    void a_rescue_committed_first_fences_out_the_old_holder() throws SQLException {
        long id = running(a, "job");
        Sql.update(a, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", id);

        b.setAutoCommit(false);
        assertThat(Sql.value(b, "SELECT tasktable.rescue_expired_tasks()")).isEqualTo(1);
        CompletableFuture<Object> lateCompletion = CompletableFuture.supplyAsync(() -> {
            try {
                return Sql.value(a, "SELECT tasktable.complete_task(?, 1)", id);
            } catch (SQLException e) {
                throw new IllegalStateException(e);
            }
        });
        b.commit();

        assertThat(lateCompletion).succeedsWithin(10, TimeUnit.SECONDS).isEqualTo(false);
        assertThat(Sql.state(a, id)).isEqualTo("queued");
    }

    @Test
    void two_claimers_never_get_the_same_task() throws SQLException {
        for (int i = 0; i < 10; i++) {
            Sql.value(a, "SELECT tasktable.enqueue_task('job')");
        }
        a.setAutoCommit(false);
        b.setAutoCommit(false);

        var first = Sql.rows(a, "SELECT id FROM tasktable.claim_tasks(6, 'a')");
        var second = Sql.rows(b, "SELECT id FROM tasktable.claim_tasks(6, 'b')");
        a.commit();
        b.commit();

        assertThat(first).hasSize(6);
        assertThat(second).as("SKIP LOCKED leaves b the other four").hasSize(4).doesNotContainAnyElementsOf(first);
    }

    @Test
    void retrying_while_another_session_revives_the_same_dedup_key_is_a_conflict() throws Exception {
        long first = (Long) Sql.value(a, "SELECT tasktable.enqueue_task('sync', dedup_key => 'k')");
        Sql.value(a, "SELECT tasktable.cancel_task(?)", first);
        long second = (Long) Sql.value(a, "SELECT tasktable.enqueue_task('sync', dedup_key => 'k')");
        Sql.value(a, "SELECT tasktable.cancel_task(?)", second);

        a.setAutoCommit(false);
        Sql.value(a, "SELECT tasktable.retry_task(?)", first);
        CompletableFuture<Void> racing = CompletableFuture.runAsync(() ->
                assertSqlState("TT011", () -> Sql.value(b, "SELECT tasktable.retry_task(?)", second)));
        a.commit();

        assertThat(racing).succeedsWithin(10, TimeUnit.SECONDS);
        assertThat(Sql.state(a, first)).isEqualTo("queued");
        assertThat(Sql.state(a, second)).isEqualTo("cancelled");
    }

    /**
     * B's insert waits for A's uncommitted task with the same key, then skips it; B must then find the task A
     * committed. enqueue_task looks it up in a statement of its own; enqueue_tasks' lookup, in the insert's
     * statement, cannot see it, and its retry (through enqueue_task) must.
     */
    @ParameterizedTest
    @ValueSource(strings = {
            "SELECT tasktable.enqueue_task('sync', dedup_key => 'k')",
            "SELECT (tasktable.enqueue_tasks(ARRAY[ROW('sync', NULL, NULL, NULL, NULL, NULL, 'k')]::tasktable.task_spec[]))[1]"})
    void concurrent_enqueues_with_one_dedup_key_return_one_task(String enqueueInB) throws Exception {
        a.setAutoCommit(false);
        long fromA = (Long) Sql.value(a, "SELECT tasktable.enqueue_task('sync', dedup_key => 'k')");
        CompletableFuture<Object> fromB = CompletableFuture.supplyAsync(() -> {
            try {
                return Sql.value(b, enqueueInB);
            } catch (SQLException e) {
                throw new IllegalStateException(e);
            }
        });
        db.awaitLockWait(b);
        a.commit();

        assertThat(fromB).succeedsWithin(10, TimeUnit.SECONDS).isEqualTo(fromA);
        assertThat(Sql.count(a, "SELECT count(*) FROM tasktable.task")).isEqualTo(1);
    }

    @Test
    void snoozing_after_the_queue_lowered_max_attempts_keeps_the_invariant() throws SQLException {
        long id = running(a, "poll");
        Sql.value(a, "SELECT tasktable.fail_task(?, 1, 'x')", id);
        Sql.update(a, "UPDATE tasktable.live_task SET run_at = now() WHERE id = ?", id);
        Sql.rows(a, "SELECT id FROM tasktable.claim_tasks(1, 'w')");
        Sql.update(a, "UPDATE tasktable.queue SET max_attempts = 1 WHERE name = 'default'");

        assertThat(Sql.value(a, "SELECT tasktable.snooze_task(?, 2, interval '1 minute')", id)).isEqualTo(true);
        assertThat(Sql.task(a, id)).containsEntry("max_attempts", 3).containsEntry("attempt", 2);
    }

    @Test
    void queue_policy_values_that_would_overflow_timestamps_are_refused() {
        assertSqlState("23514", () -> Sql.update(a, "UPDATE tasktable.queue SET backoff_cap = '10000 years'"));
        assertSqlState("23514", () -> Sql.update(a, "UPDATE tasktable.queue SET retention = '300000 years'"));
        assertSqlState("23514", () -> Sql.update(a, "UPDATE tasktable.queue SET lease = '0'"));
    }

    /** Each call once as enqueue_task, once as a batch of enqueue_tasks (a spec with a key, and the plain INSERT of V12). */
    @ParameterizedTest
    @ValueSource(strings = {"SELECT tasktable.enqueue_task(%s)", "SELECT tasktable.enqueue_tasks(ARRAY[ROW(%s)]::tasktable.task_spec[])"})
    void only_new_due_tasks_of_unpaused_queues_notify(String call) throws SQLException {
        Sql.update(a, "INSERT INTO tasktable.queue (name, paused) VALUES ('paused', true)");
        Sql.value(a, call.formatted("'sync', NULL, NULL, NULL, NULL, NULL, 'k'"));
        try (Statement s = b.createStatement()) {
            s.execute("LISTEN tasktable");
        }

        Sql.value(a, call.formatted("'sync', NULL, NULL, NULL, NULL, NULL, 'k'"));
        Sql.value(a, call.formatted("'later', NULL, NULL, now() + interval '1 hour', NULL, NULL, NULL"));
        Sql.value(a, call.formatted("'held', NULL, 'paused', NULL, NULL, NULL, NULL"));
        Sql.update(a, "INSERT INTO tasktable.queue (name) VALUES ('marker')");
        Sql.value(a, call.formatted("'marker', NULL, 'marker', NULL, NULL, NULL, NULL"));

        PGConnection listener = b.unwrap(PGConnection.class);
        PGNotification[] received = listener.getNotifications(10_000);
        assertThat(received).extracting(PGNotification::getParameter)
                .as("the dedup hit, the future task and the paused queue sent nothing before the marker")
                .containsExactly("marker");
    }
}
