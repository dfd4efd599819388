package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.Worker;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.WorkerProcess;
import io.tasktable.testing.Workers;

/**
 * Fault scenarios with worker processes (separate JVMs): SIGKILL during a drain (1), killed database connections
 * (2), a worker frozen with SIGSTOP past and within its lease (8). Each ends with the ledger's accounting.
 */
@Tag("faults")
@ExtendWith(TestDatabase.Extension.class)
class ProcessFaultsTest {

    private static final Duration DRAIN_LIMIT = Duration.ofMinutes(Faults.FULL ? 15 : 2);
    private static final Duration NO_TIMEOUT = Duration.ofMinutes(5);

    private final TestDatabase db;

    ProcessFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void workers_killed_with_sigkill_mid_drain_lose_no_task_and_complete_none_twice() throws Exception {
        int tasks = Faults.count(2_000, 20_000);
        int kills = Faults.count(3, 20);
        try (FaultHarness h = new FaultHarness(db)) {
            List<Long> ids = h.enqueueRecords(tasks, 1);
            List<Process> workers = new ArrayList<>(List.of(h.startWorker("tt-kill-0", 16, NO_TIMEOUT),
                    h.startWorker("tt-kill-1", 16, NO_TIMEOUT)));
            Duration worstRecovery = Duration.ZERO;
            for (int k = 0; k < kills; k++) {
                long target = h.succeeded(ids) + ThreadLocalRandom.current().nextInt(1, tasks / (kills + 2));
                within(DRAIN_LIMIT).until(() -> h.succeeded(ids) >= Math.min(target, tasks - 50L));
                // a random moment of the drain, and the worker holding the most tasks at that moment
                Process victim = workers.stream().max(java.util.Comparator.comparingLong(p -> held(h, p))).orElseThrow();
                workers.remove(victim);
                victim.destroyForcibly();
                assertThat(victim.waitFor(30, TimeUnit.SECONDS)).isTrue();
                long killedAt = System.nanoTime();
                List<Long> held = h.expireLeasesOf(victim);
                workers.add(h.startWorker("tt-kill-" + (k + 2), 16, NO_TIMEOUT));
                String pattern = WorkerProcess.workerPattern(victim);
                within(DRAIN_LIMIT).until(() -> h.count("id = ANY (?) AND state = 'running' AND worker LIKE ?",
                        held.toArray(Long[]::new), pattern) == 0);
                Duration recovery = Duration.ofNanos(System.nanoTime() - killedAt);
                worstRecovery = recovery.compareTo(worstRecovery) > 0 ? recovery : worstRecovery;
            }
            within(DRAIN_LIMIT).until(() -> h.unfinished(ids) == 0);

            Ledger.Result result = h.ledger.account("1 SIGKILL worker processes", kills, ids, worstRecovery);
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(h.ledger.states(ids)).isEqualTo(Map.of("succeeded", (long) tasks));
        }
    }

    @Test
    void terminated_worker_connections_including_listen_are_replaced_and_lose_no_task() throws Exception {
        int tasks = Faults.count(2_000, 20_000);
        int terminations = Faults.count(12, 60);
        try (FaultHarness h = new FaultHarness(db)) {
            // A claim whose answer is lost with its connection is held until the lease expires: keep it short.
            Sql.update(h.c, "UPDATE tasktable.queue SET lease = '3 seconds'");
            List<Long> ids = h.enqueueRecords(tasks, 2);
            List<String> apps = List.of("tt-term-a", "tt-term-b");
            for (String app : apps) {
                h.startWorker(app, 16, NO_TIMEOUT);
            }
            within(Duration.ofSeconds(60)).until(() -> apps.stream().allMatch(app -> listening(h, app)));
            Duration worstRecovery = Duration.ZERO;
            int listenKills = 0;
            for (int k = 0; k < terminations; k++) {
                long before = h.succeeded(ids);
                within(DRAIN_LIMIT).until(() -> h.succeeded(ids) > before || h.unfinished(ids) == 0);
                String app = apps.get(k % apps.size());
                boolean listen = k % 3 == 0;
                List<Map<String, Object>> victims = Sql.rows(h.c, "SELECT pid, pg_terminate_backend(pid) AS done "
                        + "FROM pg_stat_activity WHERE application_name = ? AND (query = 'LISTEN tasktable') = ? "
                        + "ORDER BY random() LIMIT 1", app, listen);
                long killedAt = System.nanoTime();
                if (listen && !victims.isEmpty()) {
                    listenKills++;
                    int pid = (Integer) victims.getFirst().get("pid");
                    within(Duration.ofSeconds(30)).until(() -> Workers.listeningBackends(h.c, app).stream()
                            .anyMatch(p -> p != pid));
                } else {
                    long after = h.succeeded(ids);
                    within(DRAIN_LIMIT).until(() -> h.succeeded(ids) > after || h.unfinished(ids) == 0);
                }
                Duration recovery = Duration.ofNanos(System.nanoTime() - killedAt);
                worstRecovery = recovery.compareTo(worstRecovery) > 0 ? recovery : worstRecovery;
            }
            within(DRAIN_LIMIT).until(() -> h.unfinished(ids) == 0);

            Ledger.Result result = h.ledger.account("2 pg_terminate_backend worker connections", terminations, ids,
                    worstRecovery);
            assertThat(listenKills).as("LISTEN connections terminated").isPositive();
            assertThat(apps).allMatch(app -> listening(h, app));
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(h.ledger.states(ids)).isEqualTo(Map.of("succeeded", (long) tasks));
        }
    }

    private static long held(FaultHarness h, Process p) {
        try {
            return h.count("state = 'running' AND worker LIKE ?", WorkerProcess.workerPattern(p));
        } catch (java.sql.SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    private static boolean listening(FaultHarness h, String app) {
        try {
            return !Workers.listeningBackends(h.c, app).isEmpty();
        } catch (java.sql.SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void a_worker_frozen_past_its_lease_is_fenced_out_and_one_frozen_within_it_keeps_its_tasks() throws Exception {
        int runs = Faults.count(1, 5);
        int held = 5;
        List<Long> all = new ArrayList<>();
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-stop-rescuer", ConnectionPool.DEFAULT_SIZE)) {
            Sql.update(h.c, "UPDATE tasktable.queue SET lease = '3 seconds'");
            Duration worstRecovery = Duration.ZERO;
            for (int run = 0; run < runs; run++) {
                // Past the lease: frozen, its leases expire (forged), a second worker re-claims and completes.
                String app = "tt-stop-" + run;
                List<Long> ids = h.enqueueRecords(held, 2_000);
                all.addAll(ids);
                Process frozen = h.startWorker(app, held, NO_TIMEOUT);
                String pattern = WorkerProcess.workerPattern(frozen);
                within(Duration.ofSeconds(60)).until(() -> h.count("id = ANY (?) AND state = 'running' AND worker LIKE ?",
                        ids.toArray(Long[]::new), pattern) == held);
                FaultHarness.signal(frozen, "STOP");
                long frozenAt = System.nanoTime();
                assertThat(h.expireLeasesOf(frozen)).hasSize(held);
                try (Worker rescuer = Worker.start(pool, FaultWorkerMain.handlers(h.effects), Workers.FAST)) {
                    within(Duration.ofSeconds(60)).until(() -> h.count("id = ANY (?) AND state = 'succeeded' AND attempt = 2",
                            (Object) ids.toArray(Long[]::new)) == held);
                }
                Duration recovery = Duration.ofNanos(System.nanoTime() - frozenAt);
                worstRecovery = recovery.compareTo(worstRecovery) > 0 ? recovery : worstRecovery;
                FaultHarness.signal(frozen, "CONT");
                within(Duration.ofSeconds(30)).until(() -> FaultHarness.logLines(app, "lease lost")
                        + FaultHarness.logLines(app, "completion refused") >= held);
                assertThat(h.count("id = ANY (?) AND state = 'succeeded' AND attempt = 2", (Object) ids.toArray(Long[]::new)))
                        .as("the frozen worker's late heartbeats and completions change nothing").isEqualTo(held);
                frozen.destroyForcibly().waitFor();

                // Within the lease: frozen for a third of it, resumed, nothing re-claimed.
                String app2 = "tt-pause-" + run;
                List<Long> short2 = h.enqueueRecords(held, 1_500);
                all.addAll(short2);
                Process paused = h.startWorker(app2, held, NO_TIMEOUT);
                String pattern2 = WorkerProcess.workerPattern(paused);
                within(Duration.ofSeconds(60)).until(() -> h.count("id = ANY (?) AND state = 'running' AND worker LIKE ?",
                        short2.toArray(Long[]::new), pattern2) == held);
                try (Worker rescuer = Worker.start(pool, FaultWorkerMain.handlers(h.effects), Workers.FAST.withQueues(List.of()))) {
                    FaultHarness.signal(paused, "STOP");
                    // the fault itself is a duration: a freeze of one second, a third of the lease
                    Thread.sleep(1_000);
                    FaultHarness.signal(paused, "CONT");
                    within(Duration.ofSeconds(60)).until(() -> h.succeeded(short2) == held);
                }
                assertThat(h.count("id = ANY (?) AND attempt = 1 AND worker LIKE ?", short2.toArray(Long[]::new), pattern2))
                        .as("a freeze shorter than the lease re-claims nothing").isEqualTo(held);
                assertThat(FaultHarness.logLines(app2, "lease lost")).isZero();
                // the next run's tasks are for that run's workers only
                paused.destroy();
                assertThat(paused.waitFor(30, TimeUnit.SECONDS)).isTrue();
            }
            Ledger.Result result = h.ledger.account("8 SIGSTOP past / within the lease", runs * 2, all, worstRecovery);
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
        }
    }

    /**
     * Regression: the rescue ran as BEGIN; pg_try_advisory_xact_lock; rescue_expired_tasks; COMMIT, so a worker
     * frozen between those round trips kept the lock in an idle transaction and no other worker rescued anything
     * until it resumed. Now it is one statement, which the server finishes whatever the client does.
     */
    @Test
    void a_worker_frozen_at_any_moment_holds_no_maintenance_lock() throws Exception {
        try (FaultHarness h = new FaultHarness(db)) {
            String app = "tt-freeze-maintenance";
            Process p = h.startWorker(app, 1, NO_TIMEOUT, Duration.ofMillis(1));
            within(Duration.ofSeconds(60)).until(() -> listening(h, app));
            for (int i = 0; i < 20; i++) {
                // the fault is a moment, not a condition: let the worker run a random while, then freeze it
                Thread.sleep(ThreadLocalRandom.current().nextInt(20, 200));
                FaultHarness.signal(p, "STOP");
                // a statement already sent finishes; nothing may be left holding a lock for the frozen client
                within(Duration.ofSeconds(5)).until(() -> Sql.count(h.c, "SELECT count(*) FROM pg_locks l "
                        + "JOIN pg_stat_activity a USING (pid) WHERE a.application_name = ? AND l.locktype = 'advisory'",
                        app) == 0);
                FaultHarness.signal(p, "CONT");
            }
        }
    }
}
