package io.tasktable.cli;

import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.jooq.DSLContext;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import io.tasktable.DatabaseUrl;
import io.tasktable.Migrations;
import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.WorkerOptions;

@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Measure tasktable on this machine (docs/performance.md has the results and how to read them).",
                "Scenarios: drain (N no-op tasks queued, W worker processes x C), enqueue (single-task "
                        + "transactions from K threads, or --batch-size per enqueue_tasks call), latency (idle worker, "
                        + "tasks at --rate one per transaction: enqueue commit to handler start), steady (enqueue and "
                        + "drain at --rate for --duration), history (drain on a clean table, then with 1,000,000 "
                        + "finished and 100,000 future tasks in it).",
                "It never touches your data: it creates its own database tasktable_bench_<pid> on the server of "
                        + "DATABASE_URL (the role needs CREATEDB), migrates it, and drops it at the end (--keep keeps it).",
                "Prints one summary line (one JSON object with --json) on stdout; progress goes to stderr."})
final class BenchCommand implements Callable<Integer> {

    enum Scenario { drain, enqueue, latency, steady, history }

    /** Worker JVMs the bench starts: these flags keep a worker at concurrency 64 well under 256 MB RSS (docs/performance.md). */
    static final String DEFAULT_WORKER_JVM_OPTS = "-Xmx64m -Xss256k -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
            + " -XX:ReservedCodeCacheSize=32m -XX:MaxMetaspaceSize=96m";
    /** How often the bench looks at its progress: a cheap count, 4 times a second, is noise next to the workload. */
    private static final Duration POLL_EVERY = Duration.ofMillis(250);
    private static final Duration WORKERS_UP_TIMEOUT = Duration.ofSeconds(60);
    private static final int ENQUEUE_CHUNK = 10_000;
    /** The largest payload enqueue_tasks takes: 1 MB as text (the padded object of payload() is that long in all). */
    private static final int MAX_PAYLOAD_BYTES = 1_048_576;

    @Spec
    private CommandSpec spec;

    @Parameters(index = "0", paramLabel = "SCENARIO", description = "drain, enqueue, latency, steady or history.")
    private Scenario scenario;

    @Option(names = "--tasks", paramLabel = "N",
            description = "Tasks per run (default: 50000; enqueue: 20000, or 200000 with --batch-size).")
    private Integer tasks;

    @Option(names = "--workers", paramLabel = "W", description = "Worker processes (default: ${DEFAULT-VALUE}).")
    private int workers = 1;

    @Option(names = "--concurrency", paramLabel = "C", description = "Concurrency of each worker (default: ${DEFAULT-VALUE}).")
    private int concurrency = 64;

    @Option(names = "--claim-batch", paramLabel = "B",
            description = "Most tasks per claim_tasks call in the workers (default: the worker's default).")
    private Integer claimBatch;

    @Option(names = "--pool-size", paramLabel = "N", description = "Connection pool size of each worker (default: the worker's default).")
    private Integer poolSize;

    @Option(names = "--vacuum-threshold", paramLabel = "N",
            description = "Each worker's --vacuum-threshold: dead row versions in live_task that make it VACUUM the table "
                    + "(default: the worker's default; 0: never).")
    private Long vacuumThreshold;

    @Option(names = "--threads", paramLabel = "K", description = "Client threads that enqueue (default: ${DEFAULT-VALUE}).")
    private int threads = 8;

    @Option(names = "--batch-size", paramLabel = "N",
            description = "enqueue: tasks per enqueue_tasks call; 1 = enqueue_task, one per transaction (default: ${DEFAULT-VALUE}).")
    private int batchSize = 1;

    @Option(names = "--rate", paramLabel = "PER_S", description = "latency, steady: tasks enqueued per second (default: 50; steady: 2000).")
    private Double rate;

    @Option(names = "--duration", paramLabel = "DURATION", converter = Durations.class,
            description = "latency, steady: how long to enqueue, e.g. 10s, 1m (default: 10s).")
    private Duration duration = Duration.ofSeconds(10);

    @Option(names = "--runs", paramLabel = "N", description = "Measured runs; the median is reported (default: ${DEFAULT-VALUE}).")
    private int runs = 1;

    @Option(names = "--floor-threads", paramLabel = "N",
            description = "drain, history: connections of the bare SKIP LOCKED floor (default: ${DEFAULT-VALUE}).")
    private int floorThreads = 2;

    @Option(names = "--floor-batch", paramLabel = "B",
            description = "drain, history: tasks per claim of the floor (default: the most a worker's claim takes, "
                    + "claim_batch; its claims take mean_claim on average).")
    private Integer floorBatchOption;

    @Option(names = "--no-floor", description = "drain, history: skip the floor measurement.")
    private boolean noFloor;

    @Option(names = "--no-retention", description = "drain: the queue keeps no succeeded task (retention 0), so "
            + "complete_tasks deletes each one as the floor does; timed by the bench's clock (release to empty queue).")
    private boolean noRetention;

    @Option(names = "--payload-bytes", paramLabel = "N",
            description = "drain, history: each task's payload (and the floor's) is a JSON object of about N bytes "
                    + "(default: ${DEFAULT-VALUE}, the empty object).")
    private int payloadBytes = 0;

    @Option(names = "--worker-jvm-opts", paramLabel = "FLAGS", description = "JVM flags of the worker processes (default: ${DEFAULT-VALUE}).")
    private String workerJvmOpts = DEFAULT_WORKER_JVM_OPTS;

    @Option(names = "--json", description = "Print one JSON object instead of the summary line.")
    private boolean json;

    @Option(names = "--keep", description = "Keep the bench database and the worker logs at the end (names printed on stderr).")
    private boolean keep;

    /** Size of a queued task's payload (octet_length of its text) in the last drain run and floor run: what --payload-bytes gave. */
    private long payloadOctets;
    private long floorPayloadOctets;
    /** VACUUMs of live_task that ran during floor runs (the workers' own, item 40); 0 unless the floor was slowed by one. */
    private long workerVacuumsDuringFloor;
    private static final String VACUUM_COUNT_SQL =
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'tasktable.live_task'::regclass";

    /** Set once CHECKPOINT was refused (the role is neither superuser nor pg_checkpoint). */
    private boolean checkpointRefused;

    private final List<Process> processes = Collections.synchronizedList(new ArrayList<>());
    /** Worker logs, deleted after a successful run unless --keep. */
    private final List<File> logs = new ArrayList<>();
    private final ObjectMapper mapper = new ObjectMapper();
    private PrintStream progress = System.err;
    private DatabaseUrl benchUrl;

    @Override
    public Integer call() throws Exception {
        validate();
        DatabaseUrl admin = DatabaseUrl.fromEnvironment();
        String name = "tasktable_bench_" + ProcessHandle.current().pid();
        try (Connection c = DriverManager.getConnection(admin.jdbcUrl(), admin.properties()); Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + name);
        }
        benchUrl = admin.withDatabase(name);
        Thread cleanup = new Thread(this::stopWorkers, "tasktable-bench-cleanup");
        Runtime.getRuntime().addShutdownHook(cleanup);
        try {
            Migrations.migrate(Cli.dataSource(benchUrl));
            ObjectNode result = switch (scenario) {
                case drain -> drainScenario(false);
                case history -> drainScenario(true);
                case enqueue -> enqueueScenario();
                case latency, steady -> pacedScenario();
            };
            result.put("load_avg", loadAverage());
            if (json) {
                spec.commandLine().getOut().println(mapper.writeValueAsString(result));
            } else {
                spec.commandLine().getOut().println(result.get("summary").asText());
            }
            if (!keep) {
                logs.forEach(File::delete);
            }
            return Cli.EXIT_OK;
        } finally {
            stopWorkers();
            Runtime.getRuntime().removeShutdownHook(cleanup);
            if (keep) {
                progress.println("bench: kept database " + name);
            } else {
                try (Connection c = DriverManager.getConnection(admin.jdbcUrl(), admin.properties()); Statement s = c.createStatement()) {
                    s.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
                }
            }
        }
    }

    private void validate() {
        if (runs < 1 || workers < 1 || threads < 1 || batchSize < 1 || floorThreads < 1
                || (tasks != null && tasks < 1) || (rate != null && rate <= 0)) {
            throw new ParameterException(spec.commandLine(), "--runs, --workers, --threads, --batch-size, --floor-threads, "
                    + "--tasks and --rate must be positive");
        }
        if (vacuumThreshold != null && vacuumThreshold < 0) {
            throw new ParameterException(spec.commandLine(), "--vacuum-threshold must be zero (never) or more");
        }
        if (payloadBytes < 0 || payloadBytes > MAX_PAYLOAD_BYTES) {
            throw new ParameterException(spec.commandLine(), "--payload-bytes must be between 0 and " + MAX_PAYLOAD_BYTES
                    + " (enqueue_tasks refuses payloads over 1 MB)");
        }
        if (payloadBytes > 0 && scenario != Scenario.drain && scenario != Scenario.history) {
            throw new ParameterException(spec.commandLine(), "--payload-bytes applies to drain and history only");
        }
        if (floorBatchOption != null && (floorBatchOption < 1 || floorBatchOption > 10_000)) {
            throw new ParameterException(spec.commandLine(), "--floor-batch must be between 1 and 10000");
        }
        if (floorBatchOption != null && scenario != Scenario.drain && scenario != Scenario.history) {
            throw new ParameterException(spec.commandLine(), "--floor-batch applies to drain and history only");
        }
        if (noRetention && scenario != Scenario.drain) {
            throw new ParameterException(spec.commandLine(), "--no-retention applies to drain only (history needs its finished tasks)");
        }
        try {
            WorkerOptions options = WorkerOptions.defaults().withConcurrency(concurrency);
            if (claimBatch != null) {
                options.withClaimBatch(claimBatch);
            }
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage());
        }
    }

    // ---------------------------------------------------------------- drain and history

    private ObjectNode drainScenario(boolean history) throws Exception {
        int n = tasks != null ? tasks : 50_000;
        if (noRetention) {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                s.execute("UPDATE tasktable.queue SET retention = interval '0' WHERE name = 'default'");
            }
        }
        // What a claim takes at most: the worker's concurrency shared by its claim threads, up to the claim batch.
        int claimLimit = WorkerOptions.defaults().withConcurrency(concurrency)
                .withClaimBatch(claimBatch != null ? claimBatch : WorkerOptions.DEFAULT_CLAIM_BATCH).claimSize();
        // The floor claims that much unless told otherwise: at a concurrency twice the claim batch the worker's
        // claims take less (mean_claim), and --floor-batch compares it with a floor claiming as much as they do.
        int floorBatch = floorBatchOption != null ? floorBatchOption : claimLimit;
        startWorkers();
        // Warm-up (not measured): JIT-compiles the workers' hot path and primes the server's caches.
        // As large as a run: it also leaves the free space a run's row versions go to (after a warm-up of 5,000
        // the first run of 50,000 extended the table, and was the slowest of three in 6 of 9 drain rows).
        drainOnce(n, "warm-up");
        if (!noFloor) {
            // warmed up like the drain, so that its table too has free space from a previous run
            floorOnce(n, floorBatch, "floor warm-up");
        }
        // Each run is followed by a floor run (the workers idle meanwhile), so that both see the machine as it was:
        // on a shared machine, floors measured one after the other after the three runs differed by up to 50% from
        // one sweep row to the next (claims of 500: 51,895 and 79,501 tasks/s, minutes apart).
        List<Double> clean = new ArrayList<>();
        List<Double> claimSizes = new ArrayList<>();
        List<Double> floors = new ArrayList<>();
        List<Double> floorClaimSizes = new ArrayList<>();
        List<Double> serverCpu = new ArrayList<>();
        List<Double> workerCpu = new ArrayList<>();
        List<Double> floorServerCpu = new ArrayList<>();
        for (int i = 1; i <= runs; i++) {
            Drained run = drainOnce(n, "run " + i + "/" + runs);
            clean.add(run.tasksPerS());
            claimSizes.add(run.meanClaim());
            serverCpu.add(run.serverCpuUs());
            workerCpu.add(run.workerCpuUs());
            if (!noFloor) {
                Floor floorRun = floorOnce(n, floorBatch, "floor " + i + "/" + runs);
                floors.add(floorRun.tasksPerS());
                floorClaimSizes.add(floorRun.meanClaim());
                floorServerCpu.add(floorRun.serverCpuUs());
            }
        }
        List<Double> withHistory = new ArrayList<>();
        if (history) {
            addHistory();
            for (int i = 1; i <= runs; i++) {
                withHistory.add(drainOnce(n, "history run " + i + "/" + runs).tasksPerS());
            }
        }
        long rssKb = peakWorkerRssKb();
        stopWorkers();
        double floor = Double.NaN;
        // The ratio is the median of each run's ratio to the floor run right after it, not a ratio of medians: the
        // machine's speed drifts between pairs more than within one.
        List<Double> ratios = new ArrayList<>();
        double ratio = Double.NaN;
        if (!noFloor) {
            floor = median(floors);
            for (int i = 0; i < runs; i++) {
                ratios.add(clean.get(i) / floors.get(i));
            }
            ratio = median(ratios);
            try (Connection c = connect(); Statement s = c.createStatement()) {
                s.execute("DROP TABLE bench_floor");
            }
        }

        double tps = median(clean);
        ObjectNode out = mapper.createObjectNode();
        out.put("scenario", scenario.name());
        out.put("tasks", n);
        out.put("workers", workers);
        out.put("concurrency", concurrency);
        out.put("claim_batch", claimLimit);
        if (!noRetention) {
            // what the claims really took: a claim thread takes the slots free at that moment, up to claim_batch
            out.put("mean_claim", Math.round(median(claimSizes) * 10) / 10.0);
        }
        out.put("runs", runs);
        out.put("payload_bytes", payloadOctets);
        out.put("tasks_per_s", round(history ? median(withHistory) : tps));
        out.putPOJO("runs_tasks_per_s", clean.stream().map(BenchCommand::round).toList());
        String extra = "";
        if (history) {
            double hist = median(withHistory);
            out.put("clean_tasks_per_s", round(tps));
            out.put("history_tasks_per_s", round(hist));
            out.putPOJO("history_runs_tasks_per_s", withHistory.stream().map(BenchCommand::round).toList());
            out.put("history_ratio", round3(hist / tps));
            out.put("history_rows", "1000000 finished + 100000 future-dated");
            extra = String.format(Locale.ROOT, "; with 1M finished + 100k future rows %,.0f tasks/s (%.0f%% of clean)",
                    hist, 100 * hist / tps);
        }
        if (!noFloor) {
            out.put("floor_tasks_per_s", round(floor));
            out.putPOJO("runs_floor_tasks_per_s", floors.stream().map(BenchCommand::round).toList());
            out.put("floor_ratio", round3(ratio));
            out.putPOJO("runs_floor_ratio", ratios.stream().map(BenchCommand::round3).toList());
            out.put("floor_threads", floorThreads);
            out.put("floor_batch", floorBatch);
            out.put("floor_mean_claim", Math.round(median(floorClaimSizes) * 10) / 10.0);
            out.put("floor_payload_bytes", floorPayloadOctets);
            out.put("worker_vacuums_during_floor", workerVacuumsDuringFloor);
        }
        putCpu(out, "server_cpu_us_per_task", serverCpu);
        putCpu(out, "worker_cpu_us_per_task", workerCpu);
        putCpu(out, "floor_server_cpu_us_per_task", floorServerCpu);
        out.put("worker_peak_rss_mb", rssKb / 1024);
        out.put("worker_jvm_opts", workerJvmOpts);
        out.put("worker_vacuum_threshold", vacuumThreshold != null ? vacuumThreshold : WorkerOptions.DEFAULT_VACUUM_THRESHOLD);
        out.put("retention", noRetention ? "0: each succeeded task deleted as it completes" : "7 days (the default)");
        out.put("clock", noRetention ? "bench: release of the queued tasks to the first look finding none left"
                : "database: min(started_at) to max(finished_at) of the run's tasks");
        out.put("checkpoint_before_each_run", !checkpointRefused);
        out.put("summary", String.format(Locale.ROOT,
                "%s: %,d no-op tasks%s, %d worker(s) x %d, claim batch %d%s: %,.0f tasks/s clean (median of %d)%s%s; "
                        + "worker peak RSS %d MB",
                scenario, n, payloadBytes == 0 ? "" : String.format(Locale.ROOT, " (payloads of %,d bytes)", payloadOctets),
                workers, concurrency, claimLimit, noRetention ? ", retention 0" : "", tps, runs, extra,
                noFloor ? "" : String.format(Locale.ROOT, "; floor %,.0f tasks/s%s (%.0f%%, median of the runs' ratios)",
                        floor, floorBatch == claimLimit ? "" : " claiming " + floorBatch, 100 * ratio),
                rssKb / 1024));
        return out;
    }

    /**
     * Queues n no-op tasks while the queue is paused, then releases them at once; returns tasks/s by the database
     * clock. The previous run's tasks are deleted and vacuumed away, never truncated, in every run: a truncated
     * table has no free space, so each claim and completion wrote its row versions to pages added at the end
     * (history 50,000 tasks at batch 500 x 1,000, median of 3: the truncated clean runs 30,488 tasks/s, the
     * history runs, on a deleted and vacuumed table, 49,795: 163% of "clean").
     */
    private Drained drainOnce(int n, String label) throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("UPDATE tasktable.queue SET paused = true WHERE name = 'default'");
            s.execute("DELETE FROM tasktable.finished_task WHERE kind = 'noop'");
            s.execute("DELETE FROM tasktable.live_task WHERE kind = 'noop'");
            enqueueNoops(c, n, payload());
            long first = query(c, "SELECT min(id) FROM tasktable.live_task WHERE kind = 'noop'");
            payloadOctets = query(c, "SELECT octet_length(payload::text) FROM tasktable.live_task WHERE kind = 'noop' ORDER BY id LIMIT 1");
            s.execute("VACUUM ANALYZE tasktable.live_task, tasktable.finished_task");
            checkpoint(s);
            Cpu cpu = Cpu.of(workerBackends(c), processes.stream().map(Process::pid).toList());
            long released = System.nanoTime();
            s.execute("UPDATE tasktable.queue SET paused = false WHERE name = 'default'");
            s.execute("NOTIFY tasktable, 'default'");
            // Progress is the id of the next task to claim, the first entry of task_claim_idx (tasks are claimed in id
            // order here); done is no such task and none running. Both are index probes: counting what was left, every
            // 250 ms, took 8-12% of a core away from the measured drain of 200,000 (one backend, /proc/<pid>/stat).
            try (PreparedStatement progressed = c.prepareStatement("SELECT CASE WHEN next IS NOT NULL THEN next - ? "
                    + "WHEN EXISTS (SELECT FROM tasktable.live_task WHERE state = 'running') THEN ? - 1 ELSE ? END "
                    + "FROM (SELECT (SELECT id FROM tasktable.live_task WHERE state = 'queued' AND priority = 0 AND run_at <= now() "
                    + "ORDER BY priority DESC, run_at, id LIMIT 1) AS next) AS x")) {
                progressed.setLong(1, first);
                progressed.setLong(2, n);
                progressed.setLong(3, n);
                waitUntil(label, n, noRetention, () -> {
                    try (ResultSet r = progressed.executeQuery()) {
                        r.next();
                        return r.getLong(1);
                    }
                });
            }
            double[] cpuUs = cpu.usPerTask(workerBackends(c), n);
            if (noRetention) {
                // Nothing is left to time by: each task was deleted as it completed. The bench's clock runs from the
                // release to the first look that found the queue empty (waitUntil looks closer as it nears): a few
                // milliseconds long, under 1% of a run of 50,000. Looking every 5 ms all along took 16% of the
                // machine's CPU from the drain it timed (perf, the bench's main thread).
                return new Drained(n / ((System.nanoTime() - released) / 1e9), Double.NaN, cpuUs[0], cpuUs[1]);
            }
            // a claim is one transaction: its tasks share its started_at (now()), and no other claim has it
            try (ResultSet r = s.executeQuery("SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)), "
                    + "count(DISTINCT (worker, started_at)) FROM tasktable.finished_task WHERE kind = 'noop'")) {
                r.next();
                return new Drained(r.getLong(1) / r.getDouble(2), (double) r.getLong(1) / r.getLong(3), cpuUs[0], cpuUs[1]);
            }
        }
    }

    /**
     * Starts a measured drain right after a checkpoint, so that no run pays for another's full-page writes (the
     * first change to a page after a checkpoint logs the whole page, and loading the history scenario's 1.1M rows
     * brings a checkpoint on): one suspect of the history comparison's swings (56% to 177% of clean). Needs
     * superuser or pg_checkpoint; without it the runs go on, and the JSON says so.
     */
    private void checkpoint(Statement s) {
        if (checkpointRefused) {
            return;
        }
        try {
            s.execute("CHECKPOINT");
        } catch (SQLException e) {
            checkpointRefused = true;
            progress.println("bench: CHECKPOINT refused (" + e.getMessage().lines().findFirst().orElse("") + "); runs may pay "
                    + "for each other's full-page writes");
        }
    }

    /** The no-op tasks' payload: {@code {}}, or with --payload-bytes an object whose text is that long (at least 11 bytes). */
    private String payload() {
        return payloadBytes == 0 ? "{}" : "{\"pad\": \"" + "x".repeat(Math.max(0, payloadBytes - 11)) + "\"}";
    }

    private static void enqueueNoops(Connection c, int n, String payload) throws SQLException {
        try (PreparedStatement p = c.prepareStatement("SELECT cardinality(tasktable.enqueue_tasks(ARRAY(SELECT "
                + "ROW('noop', ?::jsonb, NULL, NULL, NULL, NULL, NULL)::tasktable.task_spec FROM generate_series(1, ?))))")) {
            p.setString(1, payload);
            for (int done = 0; done < n; done += ENQUEUE_CHUNK) {
                p.setInt(2, Math.min(ENQUEUE_CHUNK, n - done));
                p.executeQuery().close();
            }
        }
    }

    /** The history scenario's dead weight: finished tasks inside retention, and tasks due tomorrow. */
    private void addHistory() throws SQLException {
        progress.println("bench: adding 1,000,000 finished and 100,000 future-dated tasks");
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("INSERT INTO tasktable.finished_task (queue, kind, payload, state, attempt, worker, started_at, finished_at, result) "
                    + "SELECT 'default', 'history', '{\"n\": 1}', 'succeeded', 1, 'bench', now() - interval '1 day', "
                    + "now() - interval '1 day' + g * interval '50 ms', NULL FROM generate_series(1, 1000000) g");
            s.execute("INSERT INTO tasktable.live_task (queue, kind, run_at) "
                    + "SELECT 'default', 'future', now() + interval '1 day' + g * interval '1 ms' FROM generate_series(1, 100000) g");
            s.execute("VACUUM ANALYZE tasktable.live_task, tasktable.finished_task");
        }
    }

    /**
     * The bare minimum of this pattern on the same server: claim a batch in one transaction (UPDATE ... WHERE id
     * IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT b) RETURNING), delete it in a second; plain JDBC, wall clock.
     */
    private Floor floorOnce(int n, int batch, String label) throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            // kept from run to run and vacuumed, as the drain's table is (see drainOnce)
            s.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    + "payload jsonb NOT NULL DEFAULT '{}', run_at timestamptz NOT NULL DEFAULT now(), locked_at timestamptz)");
            // The drain's dead rows go first: this VACUUM waits for a worker's own (item 40) to end, and the workers,
            // which look at live_task's dead rows for 11 s after their last claim, find none to vacuum while the floor runs.
            s.execute("VACUUM tasktable.live_task");
            long workerVacuums = query(c, VACUUM_COUNT_SQL);
            s.execute("DELETE FROM bench_floor");
            s.execute("VACUUM bench_floor");
            try (PreparedStatement fill = c.prepareStatement("INSERT INTO bench_floor (payload) SELECT ?::jsonb FROM generate_series(1, ?)")) {
                fill.setString(1, payload());
                fill.setInt(2, n);
                fill.executeUpdate();
            }
            floorPayloadOctets = query(c, "SELECT octet_length(payload::text) FROM bench_floor ORDER BY id LIMIT 1");
            s.execute("VACUUM ANALYZE bench_floor");
            checkpoint(s);
            AtomicLong done = new AtomicLong();
            AtomicLong claims = new AtomicLong();
            LastCommit lastCommit = new LastCommit();
            List<Thread> threads = new ArrayList<>();
            Map<Integer, Throwable> failures = new ConcurrentHashMap<>();
            // The clock starts once every thread has connected and prepared its statements, as the drain's starts at
            // its first claim (its workers connected long before): connecting was up to 20 ms of a 0.5 s floor run.
            CountDownLatch ready = new CountDownLatch(floorThreads);
            CountDownLatch go = new CountDownLatch(1);
            List<Long> backends = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch measured = new CountDownLatch(1);
            for (int t = 0; t < floorThreads; t++) {
                int me = t;
                threads.add(Thread.ofPlatform().name("bench-floor-" + t).start(() -> {
                    try (Connection fc = connect();
                         PreparedStatement claim = fc.prepareStatement("UPDATE bench_floor SET locked_at = now() WHERE id IN "
                                 + "(SELECT id FROM bench_floor WHERE locked_at IS NULL AND run_at <= now() ORDER BY id "
                                 + "LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING id, payload");
                         PreparedStatement delete = fc.prepareStatement("DELETE FROM bench_floor WHERE id = ANY (?)")) {
                        claim.setInt(1, batch);
                        backends.add(query(fc, "SELECT pg_backend_pid()"));
                        ready.countDown();
                        go.await();
                        while (true) {
                            List<Long> ids = new ArrayList<>(batch);
                            try (ResultSet r = claim.executeQuery()) {
                                while (r.next()) {
                                    ids.add(r.getLong(1));
                                    r.getString(2);
                                }
                            }
                            if (ids.isEmpty()) {
                                measured.await(); // the connection's backend is read after the run, then closed
                                return;
                            }
                            delete.setArray(1, fc.createArrayOf("bigint", ids.toArray()));
                            delete.executeUpdate();
                            lastCommit.at(System.nanoTime());
                            done.addAndGet(ids.size());
                            claims.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        failures.put(me, e);
                        ready.countDown();
                    }
                }));
            }
            ready.await();
            Cpu cpu = Cpu.of(List.copyOf(backends), List.of());
            long start = System.nanoTime();
            go.countDown();
            Runnable failed = () -> failures.values().stream().findFirst().ifPresent(e -> {
                throw new IllegalStateException("floor failed: " + e, e);
            });
            double cpuUs;
            try {
                waitUntil(label, n, () -> {
                    failed.run(); // else the run would never end
                    return done.get();
                });
                cpuUs = cpu.usPerTask(cpu.backends(), n)[0];
            } finally {
                measured.countDown();
            }
            for (Thread t : threads) {
                t.join();
            }
            failed.run();
            workerVacuumsDuringFloor += query(c, VACUUM_COUNT_SQL) - workerVacuums;
            return new Floor(n / ((lastCommit.nanos() - start) / 1e9), cpuUs, (double) n / claims.get());
        }
    }

    // ---------------------------------------------------------------- enqueue

    private ObjectNode enqueueScenario() throws Exception {
        // Batches: runs of 200,000 (about 2 s). Runs of 50,000 lasted half a second, in which this JVM was still
        // compiling its client path (C2 at 12% of the CPU in a perf window) and came out 10-25% slower (item 36).
        int n = tasks != null ? tasks : batchSize == 1 ? 20_000 : 200_000;
        List<Double> rates = new ArrayList<>();
        List<Long> lastLatencies = List.of();
        // Run 0 is a warm-up (not measured) that JIT-compiles the client path, as drain warms up its workers.
        for (int i = 0; i <= runs; i++) {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                s.execute("TRUNCATE tasktable.live_task, tasktable.finished_task");
                s.execute("VACUUM ANALYZE tasktable.live_task, tasktable.finished_task");
            }
            List<Long> latencies = Collections.synchronizedList(new ArrayList<>());
            AtomicLong claimed = new AtomicLong();
            AtomicLong done = new AtomicLong();
            LastCommit lastCommit = new LastCommit();
            List<Thread> clients = new ArrayList<>();
            Map<Integer, Throwable> failures = new ConcurrentHashMap<>();
            long start = System.nanoTime();
            for (int t = 0; t < threads; t++) {
                int me = t;
                clients.add(Thread.ofPlatform().name("bench-enqueue-" + t).start(() -> {
                    try (Connection ec = connect()) {
                        DSLContext tx = DSL.using(ec, SQLDialect.POSTGRES);
                        List<Long> mine = new ArrayList<>();
                        while (true) {
                            long from = claimed.getAndAdd(batchSize);
                            if (from >= n) {
                                break;
                            }
                            int count = (int) Math.min(batchSize, n - from);
                            long t0 = System.nanoTime();
                            if (batchSize == 1) {
                                TaskClient.enqueue(tx, NewTask.of("noop", "{}"));
                            } else {
                                TaskClient.enqueueAll(tx, Collections.nCopies(count, NewTask.of("noop", "{}")));
                            }
                            long t1 = System.nanoTime();
                            mine.add(t1 - t0);
                            lastCommit.at(t1);
                            done.addAndGet(count);
                        }
                        latencies.addAll(mine);
                    } catch (Throwable e) {
                        failures.put(me, e);
                        claimed.set(n);
                    }
                }));
            }
            waitUntil(i == 0 ? "warm-up" : "run " + i + "/" + runs, n, done::get);
            for (Thread t : clients) {
                t.join();
            }
            if (!failures.isEmpty()) {
                Throwable first = failures.values().iterator().next();
                throw new IllegalStateException("enqueue failed: " + first, first);
            }
            if (i > 0) {
                rates.add(n / ((lastCommit.nanos() - start) / 1e9));
                lastLatencies = latencies;
            }
        }
        double tps = median(rates);
        long[] sorted = lastLatencies.stream().mapToLong(Long::longValue).sorted().toArray();
        ObjectNode out = mapper.createObjectNode();
        out.put("scenario", "enqueue");
        out.put("tasks", n);
        out.put("threads", threads);
        out.put("batch_size", batchSize);
        out.put("runs", runs);
        out.put("tasks_per_s", round(tps));
        out.putPOJO("runs_tasks_per_s", rates.stream().map(BenchCommand::round).toList());
        out.put("p50_ms", ms(percentile(sorted, 50)));
        out.put("p99_ms", ms(percentile(sorted, 99)));
        out.put("latency_of", batchSize == 1 ? "one enqueue_task transaction" : "one enqueue_tasks call of batch_size tasks");
        out.put("clock", "client wall clock, first call to last commit");
        out.put("summary", String.format(Locale.ROOT,
                "enqueue: %,d tasks, %d thread(s), %s: %,.0f tasks/s (median of %d); per call p50 %.2f ms, p99 %.2f ms",
                n, threads, batchSize == 1 ? "one enqueue_task per transaction" : batchSize + " per enqueue_tasks call",
                tps, runs, ms(percentile(sorted, 50)), ms(percentile(sorted, 99))));
        return out;
    }

    // ---------------------------------------------------------------- latency and steady

    /**
     * Workers wait; tasks of kind stamp (the handler returns its start time) are enqueued one per transaction at a
     * fixed rate. Latency = handler start minus the client's clock right after the enqueue commit returned.
     */
    private ObjectNode pacedScenario() throws Exception {
        boolean steady = scenario == Scenario.steady;
        double perSecond = rate != null ? rate : steady ? 2000 : 50;
        int enqueuers = steady ? threads : 1;
        startWorkers();
        paced(perSecond, Duration.ofSeconds(2), enqueuers, "warm-up");
        Map<String, List<Double>> percentiles = new HashMap<>();
        List<Double> throughputs = new ArrayList<>();
        int measured = 0;
        double achieved = 0;
        for (int i = 1; i <= runs; i++) {
            long t0 = System.nanoTime();
            Paced run = paced(perSecond, duration, enqueuers, "run " + i + "/" + runs);
            Map<Long, Long> committed = run.committed();
            // by the time the enqueuers took: when they fall behind the rate (a busy machine), it shows here
            achieved = committed.size() / run.enqueueSeconds();
            long[] latencies;
            double throughput;
            try (Connection c = connect(); Statement s = c.createStatement()) {
                List<Long> values = new ArrayList<>();
                try (PreparedStatement p = c.prepareStatement("SELECT id, (result ->> 'started_at_us')::bigint "
                        + "FROM tasktable.task WHERE id = ANY (?)")) {
                    p.setArray(1, c.createArrayOf("bigint", committed.keySet().toArray()));
                    try (ResultSet r = p.executeQuery()) {
                        while (r.next()) {
                            values.add(r.getLong(2) - committed.get(r.getLong(1)));
                        }
                    }
                }
                latencies = values.stream().mapToLong(Long::longValue).sorted().toArray();
                try (ResultSet r = s.executeQuery("SELECT count(*), extract(epoch FROM max(finished_at) - min(created_at)) "
                        + "FROM tasktable.task WHERE kind = 'stamp' AND created_at >= now() - make_interval(secs => "
                        + ((System.nanoTime() - t0) / 1e9) + ")")) {
                    r.next();
                    throughput = r.getLong(1) / r.getDouble(2);
                }
                s.execute("TRUNCATE tasktable.live_task, tasktable.finished_task");
            }
            for (int p : new int[] {50, 95, 99, 100}) {
                percentiles.computeIfAbsent("p" + p, k -> new ArrayList<>()).add(percentile(latencies, p) / 1000.0);
            }
            throughputs.add(throughput);
            measured = latencies.length;
        }
        long rssKb = peakWorkerRssKb();
        ObjectNode out = mapper.createObjectNode();
        out.put("scenario", scenario.name());
        out.put("tasks", measured);
        out.put("rate_per_s", perSecond);
        out.put("enqueue_threads", enqueuers);
        out.put("achieved_enqueue_per_s", round(achieved));
        out.put("tasks_per_s", round(median(throughputs)));
        out.put("workers", workers);
        out.put("concurrency", concurrency);
        out.put("duration_s", duration.toMillis() / 1000.0);
        out.put("runs", runs);
        // Each percentile is the median over the runs of that run's percentile.
        double p50 = median(percentiles.get("p50"));
        double p95 = median(percentiles.get("p95"));
        double p99 = median(percentiles.get("p99"));
        double max = median(percentiles.get("p100"));
        out.put("p50_ms", round3(p50));
        out.put("p95_ms", round3(p95));
        out.put("p99_ms", round3(p99));
        out.put("max_ms", round3(max));
        out.putPOJO("runs_p99_ms", percentiles.get("p99").stream().map(BenchCommand::round3).toList());
        out.put("worker_peak_rss_mb", rssKb / 1024);
        out.put("clock", "enqueue commit (client clock after commit returned) to handler start (worker clock, same machine)");
        out.put("summary", String.format(Locale.ROOT,
                "%s: %.0f tasks/s for %ss, %d worker(s) x %d: enqueue commit to handler start p50 %.2f ms, p95 %.2f ms, "
                        + "p99 %.2f ms, max %.2f ms (medians of %d runs); achieved %,.0f tasks/s",
                scenario, perSecond, duration.toMillis() / 1000.0, workers, concurrency, p50, p95, p99, max, runs,
                median(throughputs)));
        return out;
    }

    /**
     * A drain run: tasks/s, the tasks a claim took on average (NaN when nothing is left to count them by), and the
     * CPU per task of the workers' backends and of the worker processes (µs; NaN when unknown, see {@link Cpu}).
     */
    private record Drained(double tasksPerS, double meanClaim, double serverCpuUs, double workerCpuUs) {}

    /**
     * A floor run's rate, the CPU per task of its backends (µs), and the tasks per claim that found any (as the
     * drain's mean_claim).
     */
    private record Floor(double tasksPerS, double serverCpuUs, double meanClaim) {}

    /** The worker processes' connections, by the application name their pool gives them. */
    private static List<Long> workerBackends(Connection c) throws SQLException {
        List<Long> pids = new ArrayList<>();
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT pid FROM pg_stat_activity "
                + "WHERE datname = current_database() AND application_name = 'tasktable-worker' ORDER BY pid")) {
            while (r.next()) {
                pids.add(r.getLong(1));
            }
        }
        return pids;
    }

    /**
     * CPU time used by the database's backends and by local processes between two readings, per task: which of
     * the two cores' time a drain costs goes to the server and which to the worker, where the tasks/s of one run
     * move by a third from minute to minute on a shared machine. Read from this host's process table
     * ({@link ProcessHandle.Info#totalCpuDuration()}), so known only when PostgreSQL runs here: NaN otherwise, or
     * when a backend came or went during the run (its time would be missed).
     */
    private record Cpu(List<Long> backends, Duration server, List<Long> locals, Duration local) {

        static Cpu of(List<Long> backends, List<Long> locals) {
            return new Cpu(backends, total(backends, true), locals, total(locals, false));
        }

        /** µs per task since this reading: {server, local}. */
        double[] usPerTask(List<Long> backendsNow, int tasks) {
            Duration serverNow = backendsNow.equals(backends) ? total(backends, true) : null;
            Duration localNow = total(locals, false);
            return new double[] {perTask(server, serverNow, tasks), perTask(local, localNow, tasks)};
        }

        private static double perTask(Duration before, Duration after, int tasks) {
            return before == null || after == null ? Double.NaN : after.minus(before).toNanos() / 1e3 / tasks;
        }

        private static Duration total(List<Long> pids, boolean postgres) {
            Duration sum = Duration.ZERO;
            for (long pid : pids) {
                Optional<ProcessHandle.Info> info = ProcessHandle.of(pid).map(ProcessHandle::info);
                Optional<Duration> cpu = postgres ? info.flatMap(i -> backendCpuTime(pid, i))
                        : info.flatMap(ProcessHandle.Info::totalCpuDuration);
                // a pid PostgreSQL reports is a process here only if the server runs here
                boolean sameProcess = !postgres || info.flatMap(ProcessHandle.Info::command).orElse("").contains("postgres");
                if (cpu.isEmpty() || !sameProcess) {
                    return null;
                }
                sum = sum.plus(cpu.get());
            }
            return sum;
        }

        /**
         * A backend's CPU time: the nanoseconds of /proc/PID/schedstat where the kernel keeps them, else the clock
         * ticks ProcessHandle reads (10 ms each: a smoke run's floor used less than one, and read as 0 µs per task).
         * Only for PostgreSQL's backends, which have one thread: schedstat counts a process's first thread alone
         * (a worker's JVM keeps ProcessHandle's total of all its threads, dead ones included).
         */
        private static Optional<Duration> backendCpuTime(long pid, ProcessHandle.Info info) {
            try {
                String onCpu = Files.readString(Path.of("/proc", Long.toString(pid), "schedstat")).split(" ", 2)[0].trim();
                long nanos = Long.parseLong(onCpu);
                if (nanos > 0) {
                    return Optional.of(Duration.ofNanos(nanos));
                }
            } catch (IOException | RuntimeException e) {
                // not Linux, no schedstat in this kernel, or the process is gone: the ticks below
            }
            return info.totalCpuDuration();
        }
    }

    /** What a paced run enqueued (task id -> commit time, epoch microseconds), and how long its enqueuers took. */
    private record Paced(Map<Long, Long> committed, double enqueueSeconds) {}

    /** Enqueues stamp tasks at the rate for the duration, then waits for them all. */
    private Paced paced(double perSecond, Duration length, int enqueuers, String label) throws Exception {
        long total = Math.max(1, Math.round(perSecond * length.toNanos() / 1e9));
        Map<Long, Long> committed = new ConcurrentHashMap<>();
        AtomicLong next = new AtomicLong();
        Map<Integer, Throwable> failures = new ConcurrentHashMap<>();
        long start = System.nanoTime();
        List<Thread> clients = new ArrayList<>();
        for (int t = 0; t < enqueuers; t++) {
            int me = t;
            clients.add(Thread.ofPlatform().name("bench-paced-" + t).start(() -> {
                try (Connection c = connect();
                     PreparedStatement p = c.prepareStatement("SELECT tasktable.enqueue_task('stamp')")) {
                    while (true) {
                        long i = next.getAndIncrement();
                        if (i >= total) {
                            return;
                        }
                        long due = start + (long) (i * 1e9 / perSecond);
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                        }
                        try (ResultSet r = p.executeQuery()) {
                            r.next();
                            committed.put(r.getLong(1), epochMicros());
                        }
                    }
                } catch (Throwable e) {
                    failures.put(me, e);
                    next.set(total);
                }
            }));
        }
        for (Thread t : clients) {
            t.join();
        }
        double enqueueSeconds = (System.nanoTime() - start) / 1e9;
        if (!failures.isEmpty()) {
            Throwable first = failures.values().iterator().next();
            throw new IllegalStateException("enqueue failed: " + first, first);
        }
        try (Connection c = connect()) {
            waitUntil(label, committed.size(), () -> query(c,
                    "SELECT count(*) FROM tasktable.task WHERE kind = 'stamp' AND state = 'succeeded'"));
        }
        return new Paced(committed, enqueueSeconds);
    }

    static long epochMicros() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000 + now.getNano() / 1_000;
    }

    // ---------------------------------------------------------------- workers

    /** Starts the worker processes and waits until each listens. */
    /**
     * Median CPU per task of the runs, in µs (see {@link Cpu}): server = the workers' backends, worker = the worker
     * processes, floor_server = the floor's backends. Left out when unknown (PostgreSQL on another host).
     */
    private void putCpu(ObjectNode out, String field, List<Double> runsUs) {
        if (!runsUs.isEmpty() && runsUs.stream().noneMatch(us -> us.isNaN())) {
            out.put(field, Math.round(median(runsUs) * 10) / 10.0);
        }
    }

    private void startWorkers() throws Exception {
        String java = ProcessHandle.current().info().command().orElse(
                Path.of(System.getProperty("java.home"), "bin", "java").toString());
        String classpath = System.getProperty("java.class.path");
        for (int i = 0; i < workers; i++) {
            List<String> command = new ArrayList<>();
            command.add(java);
            command.addAll(Arrays.asList(workerJvmOpts.trim().split("\\s+")));
            command.addAll(List.of("-Dorg.jooq.no-logo=true", "-Dorg.jooq.no-tips=true", "-cp", classpath,
                    "io.tasktable.cli.Main", "work", "--concurrency", Integer.toString(concurrency)));
            if (claimBatch != null) {
                command.addAll(List.of("--claim-batch", claimBatch.toString()));
            }
            if (poolSize != null) {
                command.addAll(List.of("--pool-size", poolSize.toString()));
            }
            if (vacuumThreshold != null) {
                command.addAll(List.of("--vacuum-threshold", vacuumThreshold.toString()));
            }
            command.removeIf(String::isEmpty);
            File log = Files.createTempFile("tasktable-bench-worker-" + i + "-", ".log").toFile();
            ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log);
            builder.environment().put(DatabaseUrl.ENV, jdbcUrlWithCredentials(benchUrl));
            processes.add(builder.start());
            logs.add(log);
            progress.println("bench: worker " + (i + 1) + " log: " + log);
        }
        long deadline = System.nanoTime() + WORKERS_UP_TIMEOUT.toNanos();
        try (Connection c = connect()) {
            while (query(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    + "AND application_name = 'tasktable-worker' AND query ILIKE 'LISTEN%'") < workers) {
                for (Process p : processes) {
                    if (!p.isAlive()) {
                        throw new IllegalStateException("a worker process exited with status " + p.exitValue()
                                + " (see its log above)");
                    }
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("the worker processes did not start within " + WORKERS_UP_TIMEOUT);
                }
                Thread.sleep(50);
            }
        }
    }

    /** Peak resident set (VmHWM) of the largest worker, in kB; 0 where /proc is missing. */
    private long peakWorkerRssKb() {
        long max = 0;
        for (Process p : processes) {
            try {
                for (String line : Files.readAllLines(Path.of("/proc", Long.toString(p.pid()), "status"))) {
                    if (line.startsWith("VmHWM:")) {
                        max = Math.max(max, Long.parseLong(line.replaceAll("\\D", "")));
                    }
                }
            } catch (IOException | NumberFormatException e) {
                // not Linux, or the process is gone: no figure
            }
        }
        return max;
    }

    private void stopWorkers() {
        synchronized (processes) {
            for (Process p : processes) {
                p.destroy();
            }
            for (Process p : processes) {
                try {
                    if (!p.waitFor(20, java.util.concurrent.TimeUnit.SECONDS)) {
                        p.destroyForcibly();
                    }
                } catch (InterruptedException e) {
                    p.destroyForcibly();
                    Thread.currentThread().interrupt();
                }
            }
            processes.clear();
        }
    }

    // ---------------------------------------------------------------- helpers

    private Connection connect() throws SQLException {
        Connection c = DriverManager.getConnection(benchUrl.jdbcUrl(), withAppName(benchUrl));
        c.setAutoCommit(true);
        return c;
    }

    private static java.util.Properties withAppName(DatabaseUrl url) {
        java.util.Properties p = url.properties();
        p.setProperty("ApplicationName", "tasktable-bench");
        return p;
    }

    private static String jdbcUrlWithCredentials(DatabaseUrl url) {
        Map<String, String> params = new HashMap<>(url.params());
        params.put("user", url.user());
        if (!url.password().isEmpty()) {
            params.put("password", url.password());
        }
        return new DatabaseUrl(url.host(), url.port(), url.database(), url.user(), url.password(), params).jdbcUrl();
    }

    private static long query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getLong(1);
        }
    }

    private interface Counter {
        long get() throws Exception;
    }

    /**
     * When the last of a client-clocked run's commits returned. The run's end, not the moment the progress poll
     * (every 250 ms) saw it: stopping the clock there rounded every floor and enqueue run up to the next poll, e.g.
     * a floor of 50,000 tasks came out at 66,4xx or 49,7xx tasks/s (0.75 or 1.0 s) whatever it really took.
     */
    private static final class LastCommit {
        private final AtomicLong nanos = new AtomicLong(Long.MIN_VALUE);

        void at(long nowNanos) {
            nanos.accumulateAndGet(nowNanos, Math::max);
        }

        long nanos() {
            return nanos.get();
        }
    }

    /** Polls the counter until it reaches the target, printing a progress line on stderr. */
    private void waitUntil(String label, long target, Counter counter) throws Exception {
        waitUntil(label, target, false, counter);
    }

    /**
     * As above; with {@code closeLook}, the polls come closer as the target nears (half the time left at the rate so
     * far, 1 to 250 ms), so that the first look at the target comes at most a few milliseconds after it was reached.
     */
    private void waitUntil(String label, long target, boolean closeLook, Counter counter) throws Exception {
        long start = System.nanoTime();
        long count;
        while ((count = counter.get()) < target) {
            long elapsed = System.nanoTime() - start;
            progress.printf(Locale.ROOT, "\rbench %s %s: %,d/%,d (%.1f s)   ", scenario, label, count, target, elapsed / 1e9);
            progress.flush();
            for (Process p : processes) {
                if (!p.isAlive()) {
                    throw new IllegalStateException("a worker process exited with status " + p.exitValue());
                }
            }
            long sleepMs = POLL_EVERY.toMillis();
            if (closeLook && count > 0) {
                double leftMs = (target - count) * (elapsed / 1e6) / count;
                sleepMs = Math.max(1, Math.min(sleepMs, (long) (leftMs / 2)));
            }
            Thread.sleep(sleepMs);
        }
        progress.printf(Locale.ROOT, "\rbench %s %s: %,d/%,d done in %.1f s%n", scenario, label, target, target,
                (System.nanoTime() - start) / 1e9);
    }

    static double median(List<Double> values) {
        List<Double> sorted = values.stream().sorted().toList();
        int n = sorted.size();
        return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
    }

    /** Nearest-rank percentile of sorted values. */
    static long percentile(long[] sorted, double p) {
        if (sorted.length == 0) {
            return 0;
        }
        int rank = (int) Math.ceil(p / 100 * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
    }

    private static double ms(long nanos) {
        return round3(nanos / 1e6);
    }

    private static double round(double v) {
        return Math.round(v);
    }

    private static double round3(double v) {
        return Math.round(v * 1000) / 1000.0;
    }

    private static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).trim();
        } catch (IOException e) {
            return "unknown";
        }
    }
}
