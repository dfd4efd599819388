package io.tasktable.cli;

import static io.tasktable.testing.Workers.FAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.Worker;
import io.tasktable.testing.SideEffects;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.WorkerProcess;
import io.tasktable.testing.Workers;

/**
 * {@code tasktable work} as a real process, killed (SIGKILL) or stopped (SIGTERM) while it holds tasks; an
 * in-process worker then finishes its work. That worker runs kind {@code sleep} without sleeping and records
 * each run in {@code side_effect}, so a task run twice shows.
 */
@ExtendWith(TestDatabase.Extension.class)
class WorkerProcessTest {

    /** Exit status of a JVM ended by a signal: 128 + signal number. */
    private static final int KILLED = 128 + 9;
    private static final int TERMINATED = 128 + 15;

    private final TestDatabase db;
    private Connection c;
    private SideEffects effects;
    private TaskClient client;
    private Process process;

    WorkerProcessTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void setUp() throws SQLException {
        db.reset();
        c = db.connect();
        Workers.fastBackoff(c);
        effects = SideEffects.create(db);
        client = new TaskClient(db.dataSource());
    }

    @AfterEach
    void tearDown() throws SQLException {
        if (process != null && process.isAlive()) {
            process.destroyForcibly();
        }
        effects.close();
        c.close();
    }

    private static ConditionFactory eventually() {
        return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(20));
    }

    private List<Long> enqueueSleeps(int count, long ms, int priority) {
        return client.enqueueAll(Stream.generate(() -> NewTask.of("sleep", "{\"ms\": " + ms + "}").withPriority(priority))
                .limit(count).toList());
    }

    private long count(String where, Object... args) throws SQLException {
        return Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE " + where, args);
    }

    private static Long[] boxed(List<Long> ids) {
        return ids.toArray(Long[]::new);
    }

    /** Finishes the remaining tasks in this JVM, recording side effects. */
    private Worker rescuer(ConnectionPool pool) {
        return Worker.start(pool, Map.of("sleep", effects.handler()), FAST);
    }

    @Test
    void tasks_of_a_worker_killed_with_sigkill_are_rescued_and_completed_once() throws Exception {
        List<Long> quick = enqueueSleeps(10, 0, 10);
        List<Long> held = enqueueSleeps(20, 600_000, 0);
        process = WorkerProcess.start(db, "crash", "--concurrency", "20", "--poll-interval", "100ms");
        String worker = WorkerProcess.workerPattern(process);
        eventually().until(() -> count("id = ANY (?) AND state = 'succeeded'", (Object) boxed(quick)) == 10
                && count("id = ANY (?) AND state = 'running' AND worker LIKE ?", boxed(held), worker) == 20);

        process.destroyForcibly();
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isEqualTo(KILLED);
        assertThat(count("state = 'running'")).as("a dead worker's tasks stay running until their lease expires").isEqualTo(20);
        Sql.update(c, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE state = 'running'");

        try (ConnectionPool pool = ConnectionPool.open(db.url(), "tasktable-rescuer", ConnectionPool.DEFAULT_SIZE);
             Worker rescuer = rescuer(pool)) {
            eventually().until(() -> count("state = 'succeeded'") == 30);
        }

        Long[] heldIds = boxed(held);
        Integer[] deadAttempts = held.stream().map(id -> 1).toArray(Integer[]::new);
        assertThat(Sql.count(c, "SELECT cardinality(tasktable.complete_tasks(?, ?))", heldIds, deadAttempts))
                .as("the killed worker's late completions are refused").isZero();
        assertThat(count("id = ANY (?) AND attempt = 2 AND state = 'succeeded'", (Object) heldIds)).isEqualTo(20);
        assertThat(Sql.rows(c, "SELECT task_id FROM side_effect ORDER BY task_id").stream().map(r -> r.get("task_id")).toList())
                .as("the rescuer ran exactly the held tasks, not the ones completed before the crash")
                .containsExactlyElementsOf(held);
        long completed = count("state = 'succeeded'");
        long duplicates = effects.duplicates(c);
        System.out.printf("crash: enqueued=%d completed=%d duplicates=%d lost=%d%n",
                quick.size() + held.size(), completed, duplicates, quick.size() + held.size() - completed);
        assertThat(duplicates).isZero();
    }

    @Test
    void sigterm_lets_short_tasks_finish_and_hands_long_ones_back_to_run_at_once() throws Exception {
        List<Long> quick = enqueueSleeps(2, 1_000, 10);
        List<Long> slow = enqueueSleeps(2, 600_000, 0);
        process = WorkerProcess.start(db, "sigterm", "--concurrency", "4", "--shutdown-grace", "2s",
                "--poll-interval", "100ms");
        String worker = WorkerProcess.workerPattern(process);
        eventually().until(() -> count("state = 'running' AND worker LIKE ?", worker) == 4);

        process.destroy();
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isEqualTo(TERMINATED);
        assertThat(count("id = ANY (?) AND state = 'succeeded' AND attempt = 1", (Object) boxed(quick)))
                .as("short tasks finished within the grace period").isEqualTo(2);
        assertThat(count("id = ANY (?) AND state = 'queued' AND lease_expires_at IS NULL AND run_at <= now() AND attempt = 1",
                (Object) boxed(slow))).as("long tasks handed back, due at once").isEqualTo(2);

        try (ConnectionPool pool = ConnectionPool.open(db.url(), "tasktable-next", ConnectionPool.DEFAULT_SIZE);
             Worker next = rescuer(pool)) {
            eventually().until(() -> count("state = 'succeeded'") == 4);
        }
        assertThat(count("id = ANY (?) AND attempt = 2", (Object) boxed(slow))).isEqualTo(2);
        assertThat(effects.count(c)).isEqualTo(2);
        assertThat(effects.duplicates(c)).isZero();
    }
}
