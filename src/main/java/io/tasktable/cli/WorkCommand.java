package io.tasktable.cli;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

import io.tasktable.ConnectionPool;
import io.tasktable.DatabaseUrl;
import io.tasktable.Worker;
import io.tasktable.WorkerOptions;

@Command(name = "work", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run a worker on the database given by DATABASE_URL until SIGTERM or Ctrl-C.",
                "Built-in task kinds: noop; sleep {\"ms\": N}; fail (always throws); stamp (returns {\"started_at_us\": its start time}); "
                        + "http.post {\"url\": ..., \"body\": ..., \"headers\": {...}, \"timeout_ms\": N}.",
                "On SIGTERM it stops claiming, lets running tasks finish within --shutdown-grace, "
                        + "and hands the rest back to run again at once."})
final class WorkCommand implements Callable<Integer> {

    /** Shows up in pg_stat_activity for every connection of the worker. */
    static final String APPLICATION_NAME = "tasktable-worker";

    @Spec
    private CommandSpec spec;

    @Option(names = "--queues", split = ",", paramLabel = "QUEUE",
            description = "Queues to work on, comma-separated (default: all queues).")
    private List<String> queues = new ArrayList<>();

    @Option(names = "--concurrency", paramLabel = "N",
            description = "Most tasks running at once (default: ${DEFAULT-VALUE}).")
    private int concurrency = WorkerOptions.DEFAULT_CONCURRENCY;

    @Option(names = "--poll-interval", paramLabel = "DURATION", converter = Durations.class,
            description = "How often to look for due tasks when no NOTIFY came, e.g. 500ms, 2s (default: ${DEFAULT-VALUE}).")
    private Duration pollInterval = WorkerOptions.DEFAULT_POLL_INTERVAL;

    @Option(names = "--shutdown-grace", paramLabel = "DURATION", converter = Durations.class,
            description = "On SIGTERM, how long running tasks may finish before they are handed back (default: ${DEFAULT-VALUE}).")
    private Duration shutdownGrace = WorkerOptions.DEFAULT_SHUTDOWN_GRACE;

    @Option(names = "--handler-timeout", paramLabel = "DURATION", converter = Durations.class,
            description = "A task running longer is interrupted and retried later (default: ${DEFAULT-VALUE}).")
    private Duration handlerTimeout = WorkerOptions.DEFAULT_HANDLER_TIMEOUT;

    @Option(names = "--lease", paramLabel = "DURATION", converter = Durations.class,
            description = "Lease to claim tasks with, 1s to 1d (default: each queue's lease).")
    private Optional<Duration> lease = Optional.empty();

    @Option(names = "--rescue-interval", paramLabel = "DURATION", converter = Durations.class,
            description = "How often to rescue tasks whose lease expired; one worker at a time does it (default: ${DEFAULT-VALUE}).")
    private Duration rescueInterval = WorkerOptions.DEFAULT_RESCUE_INTERVAL;

    @Option(names = "--claim-batch", paramLabel = "N",
            description = "Most tasks one claim takes; two threads claim, each up to half the concurrency "
                    + "(default: ${DEFAULT-VALUE}).")
    private int claimBatch = WorkerOptions.DEFAULT_CLAIM_BATCH;

    @Option(names = "--vacuum-threshold", paramLabel = "N",
            description = "While claiming, VACUUM tasktable.live_task once it holds N dead row versions, if this role owns it "
                    + "or the database; "
                    + "0: leave it to autovacuum (default: ${DEFAULT-VALUE}).")
    private long vacuumThreshold = WorkerOptions.DEFAULT_VACUUM_THRESHOLD;

    @Option(names = "--pool-size", paramLabel = "N",
            description = "Database connections in the pool, besides the one for LISTEN (default: ${DEFAULT-VALUE}).")
    private int poolSize = ConnectionPool.DEFAULT_SIZE;

    @Override
    public Integer call() throws InterruptedException {
        WorkerOptions options;
        try {
            options = WorkerOptions.defaults()
                    .withQueues(queues)
                    .withConcurrency(concurrency)
                    .withPollInterval(pollInterval)
                    .withShutdownGrace(shutdownGrace)
                    .withHandlerTimeout(handlerTimeout)
                    .withRescueInterval(rescueInterval)
                    .withClaimBatch(claimBatch)
                    .withVacuumThreshold(vacuumThreshold);
            if (lease.isPresent()) {
                options = options.withLease(lease.get());
            }
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage());
        }
        ConnectionPool pool = ConnectionPool.open(DatabaseUrl.fromEnvironment(), APPLICATION_NAME, poolSize);
        Worker worker;
        try {
            worker = Worker.start(pool, BuiltinHandlers.all(), options);
        } catch (RuntimeException e) {
            pool.close();
            throw e;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            worker.close();
            pool.close();
        }, "tasktable-shutdown"));
        // The worker's threads are daemons: wait here until a signal, when the JVM runs the hook and exits
        // (status 143 after SIGTERM).
        new CountDownLatch(1).await();
        return Cli.EXIT_OK;
    }
}
