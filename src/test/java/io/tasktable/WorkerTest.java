package io.tasktable;

import static io.tasktable.testing.Workers.FAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/** The worker against a real PostgreSQL: outcomes, retries, timeouts, leases, wake-up. */
@ExtendWith(TestDatabase.Extension.class)
class WorkerTest {

    private static final String APP = "tasktable-worker-test";

    private final TestDatabase db;
    private ConnectionPool pool;
    private TaskClient client;
    private Connection c;

    WorkerTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void setUp() throws SQLException {
        db.reset();
        c = db.connect();
        Workers.fastBackoff(c);
        pool = ConnectionPool.open(db.url(), APP, ConnectionPool.DEFAULT_SIZE);
        // Not the worker's pool: a test that kills the worker's connections still enqueues.
        client = new TaskClient(db.dataSource());
    }

    @AfterEach
    void tearDown() throws SQLException {
        pool.close();
        c.close();
    }

    private static ConditionFactory eventually() {
        return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20));
    }

    private void awaitState(long id, String state) {
        eventually().until(() -> Sql.state(c, id).equals(state));
    }

    /**
     * Runs one task to completion: the worker's claim loop has then consumed its start-up (or reconnection)
     * wake-ups and sleeps on its poll interval, so only a NOTIFY can start the next task early.
     */
    private void awaitIdle() {
        awaitState(client.enqueue(NewTask.of("warm-up", "{}")), "succeeded");
    }

    private Map<String, Object> row(long id) throws SQLException {
        return Sql.task(c, id);
    }

    @Test
    void a_handler_failing_twice_then_succeeding_ends_succeeded_at_attempt_3() throws SQLException {
        long id = client.enqueue(NewTask.of("flaky", "{}"));
        try (Worker worker = Worker.start(pool, Map.of("flaky", (task, context) -> {
            if (task.attempt() < 3) {
                throw new IllegalStateException("flaky failure on attempt " + task.attempt());
            }
            return TaskResult.success();
        }), FAST)) {
            awaitState(id, "succeeded");
        }
        assertThat(row(id)).containsEntry("attempt", 3);
        assertThat((String) row(id).get("last_error")).startsWith("java.lang.IllegalStateException: flaky failure on attempt 2");
    }

    /** The worker binds its lease option into each claim (as ISO 8601 text, which PostgreSQL's interval reads). */
    @Test
    void the_tasks_a_worker_claims_carry_its_lease_option_and_its_queues() throws SQLException {
        Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('leased')");
        long mine = client.enqueue(NewTask.of("hold", "{}").inQueue("leased"));
        long other = client.enqueue(NewTask.of("hold", "{}"));
        CountDownLatch release = new CountDownLatch(1);
        try (Worker worker = Worker.start(pool, Map.of("hold", (task, context) -> {
            release.await();
            return TaskResult.success();
        }), FAST.withQueues(List.of("leased")).withLease(Duration.ofMillis(90_500)))) {
            awaitState(mine, "running");
            assertThat(Sql.value(c, "SELECT (lease_expires_at - started_at)::text FROM tasktable.task WHERE id = ?", mine))
                    .isEqualTo("00:01:30.5");
            release.countDown();
            awaitState(mine, "succeeded");
            assertThat(Sql.state(c, other)).isEqualTo("queued");
        } finally {
            release.countDown();
        }
    }

    /**
     * Regression (fault suite, scenario 4): a result the database refuses (over 1 MB, or a NUL in jsonb) made
     * complete_tasks fail for the whole batch, which the reporter dropped: the batch's good tasks ran again after
     * their leases expired, and the poison one burnt its attempts through lease expiry.
     */
    @Test
    void a_result_the_database_refuses_fails_its_task_for_good_and_spares_the_rest_of_the_batch() throws SQLException {
        List<Long> good = client.enqueueAll(Stream.generate(() -> NewTask.of("good", "{}")).limit(50).toList());
        long huge = client.enqueue(NewTask.of("huge", "{}"));
        long nul = client.enqueue(NewTask.of("nul", "{}"));
        long nulError = client.enqueue(NewTask.of("nul_error", "{}").withMaxAttempts(1));
        CountDownLatch all = new CountDownLatch(52);
        TaskHandler together = (task, context) -> {
            all.countDown();
            all.await();
            return task.kind().equals("good") ? TaskResult.success()
                    : TaskResult.success(JsonNodeFactory.instance.objectNode()
                            .put("blob", task.kind().equals("huge") ? "x".repeat(1_100_000) : "a\u0000b"));
        };
        try (Worker worker = Worker.start(pool, Map.of("good", together, "huge", together, "nul", together,
                "nul_error", (task, context) -> {
                    throw new IllegalStateException("a\u0000b");
                }), FAST.withConcurrency(60))) {
            awaitState(huge, "dead");
            awaitState(nul, "dead");
            awaitState(nulError, "dead");
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ANY (?) AND state = 'succeeded'",
                    (Object) good.toArray(Long[]::new)) == good.size());
        }
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ANY (?) AND attempt = 1",
                (Object) good.toArray(Long[]::new))).isEqualTo(good.size());
        assertThat(row(huge)).containsEntry("attempt", 1);
        assertThat((String) row(huge).get("last_error")).startsWith("the database refused the task's result");
        assertThat((String) row(nul).get("last_error")).startsWith("the database refused the task's result");
        assertThat((String) row(nulError).get("last_error")).startsWith("java.lang.IllegalStateException: a\uFFFDb");
    }

    /**
     * Regression (fault suite, scenario 4 in full mode): a handler exhausting the heap made an OutOfMemoryError
     * strike the claim and heartbeat threads too, which died; the worker then lived on claiming nothing. The
     * observer here throws the error on those threads once each, as an allocation there would.
     */
    @Test
    void out_of_memory_on_the_claim_and_report_threads_does_not_stop_the_worker() throws SQLException {
        AtomicBoolean claimOom = new AtomicBoolean(true);
        AtomicBoolean reportOom = new AtomicBoolean(true);
        WorkerObserver oom = new WorkerObserver() {
            @Override
            public void claimed(int tasks) {
                if (claimOom.getAndSet(false)) {
                    throw new OutOfMemoryError("Java heap space (simulated on the claim thread)");
                }
            }

            @Override
            public void completed(int tasks) {
                if (reportOom.getAndSet(false)) {
                    throw new OutOfMemoryError("Java heap space (simulated on the report thread)");
                }
            }
        };
        long first = client.enqueue(NewTask.of("ok", "{}"));
        try (Worker worker = Worker.start(pool, Map.of("ok", (task, context) -> TaskResult.success()), FAST, oom)) {
            eventually().until(() -> !claimOom.get());
            // claimed in the round that broke off: held until its lease expires (forged), then rescued
            Sql.update(c, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", first);
            awaitState(first, "succeeded");
            long second = client.enqueue(NewTask.of("ok", "{}"));
            awaitState(second, "succeeded");
            long third = client.enqueue(NewTask.of("ok", "{}"));
            awaitState(third, "succeeded");
        }
        assertThat(reportOom.get()).isFalse();
        assertThat(row(first)).containsEntry("attempt", 2);
    }

    @Test
    void a_task_that_always_fails_ends_dead_with_its_last_error_and_a_trimmed_stack_trace() throws SQLException {
        long id = client.enqueue(NewTask.of("doomed", "{}").withMaxAttempts(3));
        try (Worker worker = Worker.start(pool, Map.of("doomed", (task, context) -> {
            throw new IllegalStateException("boom on attempt " + task.attempt());
        }), FAST)) {
            awaitState(id, "dead");
        }
        String error = (String) row(id).get("last_error");
        assertThat(row(id)).containsEntry("attempt", 3);
        assertThat(error).startsWith("java.lang.IllegalStateException: boom on attempt 3\n\tat io.tasktable.WorkerTest");
        assertThat(error.lines().filter(line -> line.startsWith("\tat "))).hasSizeBetween(1, Failures.MAX_FRAMES);
    }

    @Test
    void a_non_retryable_exception_makes_the_task_dead_at_once() throws SQLException {
        long id = client.enqueue(NewTask.of("strict", "{}"));
        try (Worker worker = Worker.start(pool, Map.of("strict", (task, context) -> {
            throw new NonRetryableException("payload is nonsense");
        }), FAST)) {
            awaitState(id, "dead");
        }
        assertThat(row(id)).containsEntry("attempt", 1);
        assertThat((String) row(id).get("last_error")).startsWith("io.tasktable.NonRetryableException: payload is nonsense");
    }

    /**
     * Completions go to the database in batches, with NULL in place of the results when no task of a batch has one
     * (item 45 of docs/performance.md): a batch mixing both keeps each task's own.
     */
    @Test
    void a_batch_of_completions_keeps_each_tasks_own_result_or_none() throws SQLException {
        List<Long> ids = client.enqueueAll(IntStream.range(0, 40)
                .mapToObj(i -> NewTask.of("mixed", "{\"i\": " + i + "}")).toList());
        CountDownLatch all = new CountDownLatch(ids.size());
        TaskHandler together = (task, context) -> {
            all.countDown();
            all.await();
            int i = task.payload().get("i").asInt();
            return i % 2 == 0 ? TaskResult.success() : TaskResult.success(JsonNodeFactory.instance.objectNode().put("i", i));
        };
        try (Worker worker = Worker.start(pool, Map.of("mixed", together), FAST.withConcurrency(ids.size()))) {
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ANY (?) AND state = 'succeeded'",
                    (Object) ids.toArray(Long[]::new)) == ids.size());
        }
        assertThat(Sql.rows(c, "SELECT (payload ->> 'i')::int AS i, result::text AS result FROM tasktable.task "
                + "WHERE id = ANY (?) ORDER BY 1", (Object) ids.toArray(Long[]::new)))
                .allSatisfy(r -> assertThat(r.get("result"))
                        .isEqualTo((Integer) r.get("i") % 2 == 0 ? null : "{\"i\": " + r.get("i") + "}"));
    }

    @Test
    void each_handler_verdict_maps_to_its_sql_function() throws SQLException {
        long success = client.enqueue(NewTask.of("verdict", "{\"want\": \"success\"}"));
        long giveUp = client.enqueue(NewTask.of("verdict", "{\"want\": \"give-up\"}"));
        long retryLater = client.enqueue(NewTask.of("verdict", "{\"want\": \"retry-later\"}"));
        long snooze = client.enqueue(NewTask.of("verdict", "{\"want\": \"snooze\"}"));
        try (Worker worker = Worker.start(pool, Map.of("verdict", (task, context) ->
                switch (task.payload().get("want").asText()) {
                    case "success" -> TaskResult.success(JsonNodeFactory.instance.objectNode().put("answer", 42));
                    case "give-up" -> TaskResult.giveUp("no such customer");
                    case "retry-later" -> TaskResult.retryAfter("rate limited", Duration.ofHours(1));
                    default -> TaskResult.snooze(Duration.ofHours(1));
                }), FAST)) {
            awaitState(success, "succeeded");
            awaitState(giveUp, "dead");
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'queued' AND attempt = 1") == 2);
        }
        assertThat(row(success).get("result")).hasToString("{\"answer\": 42}");
        assertThat(row(giveUp)).containsEntry("last_error", "no such customer").containsEntry("attempt", 1);
        assertThat(row(retryLater)).containsEntry("last_error", "rate limited");
        assertThat(row(snooze)).containsEntry("last_error", null).containsEntry("max_attempts", 26);
        assertThat(Sql.value(c, "SELECT bool_and(run_at > now() + interval '59 minutes') FROM tasktable.task WHERE id IN (?, ?)",
                retryLater, snooze)).as("run again in an hour, by the database clock").isEqualTo(true);
    }

    @Test
    void a_task_without_a_handler_fails_with_a_clear_error() throws SQLException {
        long id = client.enqueue(NewTask.of("mystery", "{}").withMaxAttempts(1));
        try (Worker worker = Worker.start(pool, Map.of("known", (task, context) -> TaskResult.success()), FAST)) {
            awaitState(id, "dead");
        }
        assertThat(row(id)).containsEntry("last_error", "no handler registered for kind 'mystery'");
    }

    /** Regression: each cancelled timeout stayed queued for the whole handler timeout, holding its run. */
    @Test
    void a_finished_task_leaves_no_timeout_behind() throws SQLException {
        List<Long> ids = client.enqueueAll(Stream.generate(() -> NewTask.of("quick", "{}")).limit(200).toList());
        try (Worker worker = Worker.start(pool, Map.of("quick", (task, context) -> TaskResult.success()),
                FAST.withHandlerTimeout(Duration.ofMinutes(5)))) {
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE kind = 'quick' AND state = 'succeeded'")
                    == ids.size());
            // a run cancels its timeout as its thread ends, which may be just after its outcome is stored
            await().atMost(Duration.ofSeconds(2)).until(() -> worker.pendingTimeouts() == 0);
        }
    }

    @Test
    void a_handler_running_past_its_timeout_is_interrupted_and_its_attempt_fails() throws SQLException {
        long id = client.enqueue(NewTask.of("stuck", "{}").withMaxAttempts(1));
        AtomicBoolean interrupted = new AtomicBoolean();
        AtomicBoolean stopRequested = new AtomicBoolean();
        try (Worker worker = Worker.start(pool, Map.of("stuck", (task, context) -> {
            try {
                new CountDownLatch(1).await();
            } catch (InterruptedException e) {
                interrupted.set(true);
                stopRequested.set(context.stopRequested());
                throw e;
            }
            return TaskResult.success();
        }), FAST.withHandlerTimeout(Duration.ofMillis(200)))) {
            awaitState(id, "dead");
        }
        assertThat(row(id)).containsEntry("last_error", "timed out after 200ms");
        assertThat(interrupted).isTrue();
        assertThat(stopRequested).isTrue();
    }

    @Test
    void heartbeats_keep_a_task_three_times_longer_than_its_lease_from_being_rescued() throws SQLException {
        Sql.update(c, "UPDATE tasktable.queue SET lease = '1 second'");
        long id = client.enqueue(NewTask.of("long", "{}"));
        AtomicInteger rescued = new AtomicInteger();
        try (Worker worker = Worker.start(pool, Map.of("long", (task, context) -> {
            Thread.sleep(3_000);
            return TaskResult.success();
        }), FAST)) {
            await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100)).until(() -> {
                rescued.addAndGet((Integer) Sql.value(c, "SELECT tasktable.rescue_expired_tasks()"));
                return Sql.state(c, id).equals("succeeded");
            });
        }
        assertThat(rescued).hasValue(0);
        assertThat(row(id)).containsEntry("attempt", 1).containsEntry("last_error", null);
    }

    @Test
    void a_worker_that_lost_a_lease_interrupts_the_handler_and_never_reports_it() throws SQLException {
        Sql.update(c, "UPDATE tasktable.queue SET lease = '1 second'");
        long id = client.enqueue(NewTask.of("long", "{}"));
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch interrupted = new CountDownLatch(1);
        try (Worker worker = Worker.start(pool, Map.of("long", (task, context) -> {
            started.countDown();
            try {
                new CountDownLatch(1).await();
            } catch (InterruptedException e) {
                if (context.stopRequested()) {
                    interrupted.countDown();
                }
                throw e;
            }
            return TaskResult.success();
        }), FAST)) {
            eventually().until(() -> started.getCount() == 0);
            Sql.value(c, "SELECT tasktable.cancel_task(?)", id);
            eventually().until(() -> interrupted.getCount() == 0);
        }
        assertThat(row(id)).containsEntry("last_error", null);
        assertThat(Sql.state(c, id)).isEqualTo("cancelled");
    }

    @Test
    void no_more_tasks_run_at_once_than_the_concurrency_limit() throws SQLException {
        client.enqueueAll(Collections.nCopies(30, NewTask.of("count", "{}")));
        AtomicInteger now = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        try (Worker worker = Worker.start(pool, Map.of("count", (task, context) -> {
            most.accumulateAndGet(now.incrementAndGet(), Math::max);
            Thread.sleep(20);
            now.decrementAndGet();
            return TaskResult.success();
        }), FAST.withConcurrency(3))) {
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded'") == 30);
        }
        assertThat(most).hasValue(3);
    }

    @Test
    void rescue_runs_in_one_worker_at_a_time_under_the_advisory_lock() throws SQLException {
        long id = client.enqueue(NewTask.of("noop", "{}"));
        Sql.value(c, "SELECT count(*) FROM tasktable.claim_tasks(1, 'gone-worker')");
        Sql.update(c, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", id);
        try (Connection other = db.connect()) {
            other.setAutoCommit(false);
            Sql.value(other, "SELECT pg_advisory_xact_lock(?)", Maintenance.RESCUE_LOCK);
            try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()), FAST)) {
                await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(5))
                        .alias("another session holds the rescue lock: the worker skips its rounds")
                        .until(() -> Sql.state(c, id).equals("running"));
                other.commit();
                awaitState(id, "succeeded");
            }
        }
        assertThat(row(id)).containsEntry("attempt", 2)
                .containsEntry("last_error", "lease expired: the worker stopped heartbeating");
    }

    @Test
    void workers_prune_finished_tasks_past_retention() throws SQLException {
        Sql.update(c, "UPDATE tasktable.queue SET retention = '1 hour'");
        long old = client.enqueue(NewTask.of("noop", "{}"));
        long recent = client.enqueue(NewTask.of("noop", "{}"));
        try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()),
                FAST.withPruneInterval(Duration.ofMillis(100)))) {
            awaitState(recent, "succeeded");
            awaitState(old, "succeeded");
            Sql.update(c, "UPDATE tasktable.finished_task SET finished_at = now() - interval '2 hours' WHERE id = ?", old);
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", old) == 0);
        }
        assertThat(Sql.state(c, recent)).isEqualTo("succeeded");
    }

    @Test
    void a_claiming_worker_vacuums_live_task_once_it_holds_the_threshold_of_dead_row_versions() throws SQLException {
        long before = vacuumCount();
        List<Long> ids = client.enqueueAll(Collections.nCopies(3_000, NewTask.of("noop", "{}")));
        try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()),
                FAST.withConcurrency(64).withVacuumThreshold(1_000))) {
            // each task leaves two dead versions in live_task (its claim's and its completion's): 6,000 in all; the
            // backends send the last of them to pgstat up to 10 s after they go idle
            await().atMost(Duration.ofSeconds(40)).pollInterval(Duration.ofMillis(100))
                    .alias("a VACUUM of live_task by the worker (pg_stat_user_tables.vacuum_count)")
                    .until(() -> vacuumCount() > before);
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.finished_task") == ids.size());
        }
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state <> 'succeeded'")).isZero();
    }

    @Test
    void a_role_that_does_not_own_live_task_is_not_asked_to_vacuum_it() throws SQLException {
        String role = "tasktable_vacuum_test_" + ProcessHandle.current().pid();
        assertThat(Sql.value(c, Maintenance.MAY_VACUUM_SQL)).as("the tests' role owns the database").isEqualTo(true);
        Sql.update(c, "CREATE ROLE " + role + " NOLOGIN");
        Sql.update(c, "GRANT USAGE ON SCHEMA tasktable TO " + role); // as every role that runs a worker has
        try {
            Sql.update(c, "SET ROLE " + role);
            assertThat(Sql.value(c, Maintenance.MAY_VACUUM_SQL)).isEqualTo(false);
        } finally {
            Sql.update(c, "RESET ROLE");
            Sql.update(c, "REVOKE USAGE ON SCHEMA tasktable FROM " + role);
            Sql.update(c, "DROP ROLE " + role);
        }
    }

    /** Manual VACUUMs of live_task (autovacuum's are counted apart), from a fresh statistics snapshot. */
    private long vacuumCount() throws SQLException {
        Sql.value(c, "SELECT pg_stat_clear_snapshot()");
        return Sql.count(c, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'tasktable.live_task'::regclass");
    }

    @Test
    void a_worker_limited_to_some_queues_leaves_the_others_alone() throws SQLException {
        Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('mail')");
        long other = client.enqueue(NewTask.of("noop", "{}"));
        long mail = client.enqueue(NewTask.of("noop", "{}").inQueue("mail"));
        try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()),
                FAST.withQueues(List.of("mail")))) {
            awaitState(mail, "succeeded");
        }
        assertThat(Sql.state(c, other)).isEqualTo("queued");
        assertThatThrownBy(() -> Worker.start(pool, Map.of(), FAST.withQueues(List.of("mail", "nope"))))
                .isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith("unknown queue(s) [nope]");
    }

    @Test
    void claimed_tasks_record_the_worker_identity() throws SQLException {
        long id = client.enqueue(NewTask.of("noop", "{}"));
        try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()), FAST)) {
            awaitState(id, "succeeded");
            assertThat(row(id)).containsEntry("worker", worker.id());
            assertThat(worker.id()).matches("[^:]+:" + ProcessHandle.current().pid() + ":[0-9a-f]{4}");
        }
    }

    @Test
    void an_idle_worker_starts_a_new_task_long_before_its_poll_interval() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        try (Worker worker = Worker.start(pool, Map.of("warm-up", (task, context) -> TaskResult.success(), "ping", (task, context) -> {
            started.countDown();
            return TaskResult.success();
        }), FAST.withPollInterval(Duration.ofSeconds(30)))) {
            eventually().until(() -> !Workers.listeningBackends(c, APP).isEmpty());
            awaitIdle();
            client.enqueue(NewTask.of("ping", "{}"));
            assertThat(started.await(1, TimeUnit.SECONDS)).as("started within 1 s, poll interval 30 s").isTrue();
        }
    }

    /** A worker of named queues is woken by the notification it reads, not by the bytes' arrival. */
    @Test
    void an_idle_worker_of_named_queues_starts_a_new_task_long_before_its_poll_interval() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        try (Worker worker = Worker.start(pool, Map.of("warm-up", (task, context) -> TaskResult.success(), "ping", (task, context) -> {
            started.countDown();
            return TaskResult.success();
        }), FAST.withQueues(List.of("default")).withPollInterval(Duration.ofSeconds(30)))) {
            eventually().until(() -> !Workers.listeningBackends(c, APP).isEmpty());
            awaitIdle();
            client.enqueue(NewTask.of("ping", "{}"));
            assertThat(started.await(1, TimeUnit.SECONDS)).as("started within 1 s, poll interval 30 s").isTrue();
        }
    }

    @Test
    void wake_up_still_works_after_the_listen_connection_is_killed() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        try (Worker worker = Worker.start(pool, Map.of("warm-up", (task, context) -> TaskResult.success(), "ping", (task, context) -> {
            started.countDown();
            return TaskResult.success();
        }), FAST.withPollInterval(Duration.ofSeconds(30)))) {
            eventually().until(() -> !Workers.listeningBackends(c, APP).isEmpty());
            List<Integer> killed = Workers.terminateBackends(c, APP);
            eventually().until(() -> Workers.listeningBackends(c, APP).stream().anyMatch(pid -> !killed.contains(pid)));
            awaitIdle();
            client.enqueue(NewTask.of("ping", "{}"));
            assertThat(started.await(1, TimeUnit.SECONDS)).as("started within 1 s, poll interval 30 s").isTrue();
        }
    }

    @Test
    void close_lets_short_tasks_finish_and_hands_long_ones_back_at_once() throws SQLException {
        long quick = client.enqueue(NewTask.of("work", "{\"ms\": 300}"));
        long slow = client.enqueue(NewTask.of("work", "{\"ms\": 60000}"));
        Map<Long, Boolean> running = new ConcurrentHashMap<>();
        Worker worker = Worker.start(pool, Map.of("work", (task, context) -> {
            running.put(task.id(), true);
            Thread.sleep(task.payload().get("ms").asLong());
            return TaskResult.success();
        }), FAST.withShutdownGrace(Duration.ofSeconds(2)));
        eventually().until(() -> running.size() == 2);
        worker.close();

        assertThat(Sql.state(c, quick)).isEqualTo("succeeded");
        assertThat(row(slow)).containsEntry("lease_expires_at", null).containsEntry("attempt", 1);
        assertThat(Sql.state(c, slow)).isEqualTo("queued");
        assertThat(Sql.value(c, "SELECT run_at <= now() FROM tasktable.task WHERE id = ?", slow)).as("due at once").isEqualTo(true);
    }

    /**
     * A completion stuck in the database (here on a lock, held by the test) does not hold up the next one: the
     * reporter sends on two threads. With one, the second task stayed running until the first got through.
     */
    @Test
    void a_completion_stuck_in_the_database_does_not_hold_up_the_next() throws SQLException {
        Sql.update(c, "CREATE SEQUENCE public.stall_seq");
        Sql.update(c, "CREATE FUNCTION public.stall_first() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                + "IF nextval('public.stall_seq') = 1 THEN PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NULL; END $$");
        Sql.update(c, "CREATE TRIGGER stall_first AFTER INSERT ON tasktable.finished_task FOR EACH ROW "
                + "EXECUTE FUNCTION public.stall_first()");
        try (Connection gate = db.connect();
             Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()), FAST)) {
            long first;
            Sql.value(gate, "SELECT pg_advisory_lock(4242)");
            try {
                first = client.enqueue(NewTask.of("noop", "{}"));
                eventually().until(() -> Sql.count(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ? "
                        + "AND wait_event_type = 'Lock' AND wait_event = 'advisory'", APP) == 1);
                long second = client.enqueue(NewTask.of("noop", "{}"));
                awaitState(second, "succeeded");
                assertThat(Sql.state(c, first)).as("its completion still waits on the lock").isEqualTo("running");
            } finally {
                Sql.value(gate, "SELECT pg_advisory_unlock(4242)"); // else the worker could not close
            }
            awaitState(first, "succeeded");
        } finally {
            Sql.update(c, "DROP TRIGGER stall_first ON tasktable.finished_task");
            Sql.update(c, "DROP FUNCTION public.stall_first()");
            Sql.update(c, "DROP SEQUENCE public.stall_seq");
        }
    }

    /**
     * The start latency a worker reports (the tasktable.start.latency metric) runs from the task's run_at to its
     * handler starting: the claim's lateness by the database clock, plus the time since the claim by the worker's.
     */
    @Test
    void the_start_latency_a_worker_reports_runs_from_the_tasks_run_at() throws SQLException {
        long late = ((Number) Sql.value(c, "SELECT tasktable.enqueue_task('stamp', '{}', NULL, now() - interval '30 seconds')")).longValue();
        Map<Long, Duration> sinceDue = new ConcurrentHashMap<>();
        WorkerObserver observer = new WorkerObserver() {
            @Override
            public void started(ClaimedTask task, Duration lag) {
                sinceDue.put(task.id(), lag);
            }
        };
        long onTime;
        try (Worker worker = Worker.start(pool, Map.of("stamp", (task, context) -> TaskResult.success()), FAST, observer)) {
            awaitState(late, "succeeded");
            onTime = client.enqueue(NewTask.of("stamp", "{}"));
            awaitState(onTime, "succeeded");
        }
        assertThat(sinceDue.get(late)).isBetween(Duration.ofSeconds(30), Duration.ofSeconds(60));
        assertThat(sinceDue.get(onTime)).isBetween(Duration.ZERO, Duration.ofSeconds(5));
    }

    @Test
    void no_claim_takes_more_than_the_claim_batch() throws SQLException {
        client.enqueueAll(Collections.nCopies(20, NewTask.of("noop", "{}")));
        List<Integer> claims = Collections.synchronizedList(new java.util.ArrayList<>());
        WorkerObserver observer = new WorkerObserver() {
            @Override
            public void claimed(int tasks) {
                claims.add(tasks);
            }
        };
        try (Worker worker = Worker.start(pool, Map.of("noop", (task, context) -> TaskResult.success()),
                FAST.withConcurrency(10).withClaimBatch(3), observer)) {
            eventually().until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded'") == 20);
        }
        assertThat(claims).isNotEmpty().allSatisfy(n -> assertThat(n).isBetween(1, 3));
    }
}
