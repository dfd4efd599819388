package io.tasktable.faults;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.awaitility.core.ConditionFactory;

import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.testing.SideEffects;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.WorkerProcess;
import io.tasktable.testing.Workers;

/** What every fault scenario needs: a clean queue, side effects, the ledger, and worker processes. */
final class FaultHarness implements AutoCloseable {

    final TestDatabase db;
    /** The test's own session; replaced by {@link #reconnect} after a database restart. */
    Connection c;
    final SideEffects effects;
    final Ledger ledger;
    final TaskClient client;
    private final List<Process> processes = new ArrayList<>();

    FaultHarness(TestDatabase db) throws SQLException {
        this.db = db;
        db.reset();
        this.c = db.connect();
        Workers.fastBackoff(c);
        this.effects = SideEffects.create(db);
        this.ledger = Ledger.open(db);
        this.client = new TaskClient(db.dataSource());
    }

    /** A new session when the old one died (the database restarted). */
    FaultHarness reconnect() throws SQLException {
        if (!c.isValid(2)) {
            c.close();
            c = db.connect();
        }
        return this;
    }

    static ConditionFactory within(Duration limit) {
        return await().atMost(limit).pollInterval(Duration.ofMillis(20));
    }

    /** {@code record} tasks working {@code ms} each, enqueued in batches. */
    List<Long> enqueueRecords(int count, int ms) {
        List<Long> ids = new ArrayList<>();
        for (int from = 0; from < count; from += 5_000) {
            ids.addAll(client.enqueueAll(IntStream.range(from, Math.min(count, from + 5_000))
                    .mapToObj(i -> NewTask.of("record", "{\"ms\": " + ms + "}")).toList()));
        }
        return ids;
    }

    List<Long> enqueue(String kind, int count, int maxAttempts) {
        return client.enqueueAll(IntStream.range(0, count)
                .mapToObj(i -> NewTask.of(kind, "{}").withMaxAttempts(maxAttempts)).toList());
    }

    /** A {@link FaultWorkerMain} process, named by its application name. */
    Process startWorker(String applicationName, int concurrency, Duration handlerTimeout, String... jvmArgs)
            throws IOException {
        return startWorker(applicationName, concurrency, handlerTimeout, Workers.FAST.rescueInterval(), jvmArgs);
    }

    Process startWorker(String applicationName, int concurrency, Duration handlerTimeout, Duration rescueInterval,
                        String... jvmArgs) throws IOException {
        List<String> jvm = new ArrayList<>(List.of("-Xmx256m"));
        jvm.addAll(List.of(jvmArgs));
        Process p = WorkerProcess.startJava(db, applicationName, jvm, List.of(FaultWorkerMain.class.getName(),
                applicationName, Integer.toString(concurrency), Long.toString(handlerTimeout.toMillis()),
                Long.toString(rescueInterval.toMillis())));
        processes.add(p);
        return p;
    }

    static Path log(String applicationName) {
        return Path.of("target", "worker-process-" + applicationName + ".log");
    }

    static long logLines(String applicationName, String text) throws IOException {
        return Files.readAllLines(log(applicationName)).stream().filter(l -> l.contains(text)).count();
    }

    static void signal(Process p, String signal) throws IOException, InterruptedException {
        Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(p.pid())).inheritIO().start();
        if (!kill.waitFor(10, TimeUnit.SECONDS) || kill.exitValue() != 0) {
            throw new IllegalStateException("kill -" + signal + " " + p.pid() + " failed");
        }
    }

    long count(String where, Object... args) throws SQLException {
        return Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE " + where, args);
    }

    long unfinished(List<Long> ids) throws SQLException {
        return count("id = ANY (?) AND state NOT IN ('succeeded', 'dead', 'cancelled')", (Object) ids.toArray(Long[]::new));
    }

    long succeeded(List<Long> ids) throws SQLException {
        return count("id = ANY (?) AND state = 'succeeded'", (Object) ids.toArray(Long[]::new));
    }

    /** Ids of running tasks claimed by this process, their leases expired now (a crash without the wait). */
    List<Long> expireLeasesOf(Process p) throws SQLException {
        return Sql.rows(c, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' "
                        + "WHERE state = 'running' AND worker LIKE ? RETURNING id", WorkerProcess.workerPattern(p))
                .stream().map(r -> (Long) r.get("id")).toList();
    }

    /** SIGTERM to every worker process still alive; SIGKILL after 20 s. */
    @Override
    public void close() throws Exception {
        for (Process p : processes) {
            p.destroy();
        }
        for (Process p : processes) {
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
        effects.close();
        ledger.close();
        c.close();
    }
}
