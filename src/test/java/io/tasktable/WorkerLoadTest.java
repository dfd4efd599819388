package io.tasktable;

import static io.tasktable.testing.Workers.FAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.SideEffects;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/** Many tasks through real workers: each completes exactly once, also when the database drops connections. */
@ExtendWith(TestDatabase.Extension.class)
class WorkerLoadTest {

    private final TestDatabase db;
    private Connection c;
    private SideEffects effects;

    WorkerLoadTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void setUp() throws SQLException {
        db.reset();
        c = db.connect();
        effects = SideEffects.create(db);
    }

    @AfterEach
    void tearDown() throws SQLException {
        effects.close();
        c.close();
    }

    private static void enqueue(TaskClient client, int count) {
        for (int from = 0; from < count; from += 1000) {
            client.enqueueAll(Collections.nCopies(Math.min(1000, count - from), NewTask.of("effect", "{}")));
        }
    }

    private long succeeded() throws SQLException {
        return Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded'");
    }

    /** Worker a claims on two threads, b (concurrency 1) on one. */
    @Test
    void two_workers_complete_5000_tasks_each_exactly_once() throws SQLException {
        int tasks = 5000;
        try (ConnectionPool poolA = ConnectionPool.open(db.url(), "tasktable-load-a", 6);
             ConnectionPool poolB = ConnectionPool.open(db.url(), "tasktable-load-b", 6)) {
            enqueue(new TaskClient(poolA.dataSource()), tasks);
            WorkerOptions options = FAST.withConcurrency(16);
            try (Worker a = Worker.start(poolA, Map.of("effect", effects.handler()), options);
                 Worker b = Worker.start(poolB, Map.of("effect", effects.handler()), options.withConcurrency(1))) {
                assertThat(a.claimers()).isEqualTo(2);
                assertThat(b.claimers()).isEqualTo(1);
                await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(100)).until(() -> succeeded() == tasks);
                assertThat(Sql.count(c, "SELECT count(DISTINCT worker) FROM tasktable.task")).as("both workers took part").isEqualTo(2);
            }
        }
        assertThat(effects.count(c)).isEqualTo(tasks);
        assertThat(effects.duplicates(c)).isZero();
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE attempt <> 1")).isZero();
    }

    @Test
    void a_worker_whose_connections_are_killed_mid_run_recovers_and_loses_nothing() throws SQLException {
        int tasks = 2000;
        String app = "tasktable-connection-loss";
        // A claim whose answer was lost with its connection leaves a task running; a short lease brings it
        // back within seconds (the heartbeat keeps the tasks actually running alive).
        Sql.update(c, "UPDATE tasktable.queue SET lease = '3 seconds'");
        Workers.fastBackoff(c);
        List<Integer> killed = new ArrayList<>();
        try (ConnectionPool pool = ConnectionPool.open(db.url(), app, 6)) {
            enqueue(new TaskClient(db.dataSource()), tasks);
            try (Worker worker = Worker.start(pool, Map.of("effect", effects.handler(Duration.ofMillis(2))),
                    FAST.withConcurrency(16))) {
                assertThat(worker.claimers()).isEqualTo(2);
                for (int step : IntStream.of(tasks / 4, tasks / 2).toArray()) {
                    await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(10)).until(() -> succeeded() >= step);
                    killed.addAll(Workers.terminateBackends(c, app));
                }
                await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(100)).until(() -> succeeded() == tasks);
            }
        }
        long completed = succeeded();
        long duplicates = effects.duplicates(c);
        System.out.printf("connection-loss: enqueued=%d completed=%d duplicates=%d lost=%d (backends killed: %d)%n",
                tasks, completed, duplicates, tasks - effects.count(c), killed.size());
        assertThat(killed).as("the pool's and the listener's connections were killed").hasSizeGreaterThanOrEqualTo(4);
        assertThat(effects.count(c)).isEqualTo(tasks);
        assertThat(duplicates).isZero();
    }
}
