package io.tasktable.cli;

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
import io.tasktable.Migrations;
import io.tasktable.Worker;
import io.tasktable.WorkerOptions;
import io.tasktable.server.ServerOptions;
import io.tasktable.server.TaskMetrics;
import io.tasktable.server.TaskServer;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Run the HTTP server: JSON API under /api, dashboard at /, /health and /metrics.",
                "Mutating endpoints require 'Authorization: Bearer <token>' when TASKTABLE_API_TOKEN is set."})
final class ServeCommand implements Callable<Integer> {

    /** Environment variable holding the API token; a flag would leak it into the process list. */
    static final String TOKEN_ENV = "TASKTABLE_API_TOKEN";

    @Spec
    private CommandSpec spec;

    @Option(names = "--host", defaultValue = "${env:TASKTABLE_HOST:-" + ServerOptions.DEFAULT_HOST + "}",
            description = "Interface to listen on (default: ${DEFAULT-VALUE}, env TASKTABLE_HOST).")
    private String host;

    @Option(names = "--port", defaultValue = "${env:TASKTABLE_PORT:-" + ServerOptions.DEFAULT_PORT + "}",
            description = "TCP port, 0 for any free one (default: ${DEFAULT-VALUE}, env TASKTABLE_PORT).")
    private int port;

    @Option(names = "--migrate", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Apply pending migrations before serving (default: yes; --no-migrate to skip).")
    private boolean migrate;

    @Option(names = "--max-body-bytes", defaultValue = "" + ServerOptions.DEFAULT_MAX_BODY_BYTES,
            description = "Largest request body accepted; larger ones get 413 (default: ${DEFAULT-VALUE}).")
    private long maxBodyBytes;

    @Option(names = "--allow-open-access",
            description = "Allow listening on a non-loopback address without TASKTABLE_API_TOKEN.")
    private boolean allowOpenAccess;

    @Option(names = "--pool-size", defaultValue = "10",
            description = "Database connections for the API (default: ${DEFAULT-VALUE}); --workers adds its own.")
    private int poolSize;

    @Option(names = "--workers", paramLabel = "N", defaultValue = "0",
            description = "Also run an in-process worker with the built-in handlers and this concurrency (default: none).")
    private int workers;

    @Option(names = "--queues", split = ",", paramLabel = "QUEUE",
            description = "With --workers: queues to work on, comma-separated (default: all queues).")
    private List<String> queues = new ArrayList<>();

    @Override
    public Integer call() throws InterruptedException {
        ServerOptions options = new ServerOptions(host, port, Optional.ofNullable(System.getenv(TOKEN_ENV)),
                maxBodyBytes, allowOpenAccess);
        DatabaseUrl url = DatabaseUrl.fromEnvironment();
        if (workers < 0) {
            throw new ParameterException(spec.commandLine(), "--workers must be 0 or more");
        }
        CountDownLatch stopped = new CountDownLatch(1);
        try (ConnectionPool pool = ConnectionPool.open(url, "tasktable", poolSize + (workers > 0 ? ConnectionPool.DEFAULT_SIZE : 0))) {
            if (migrate) {
                int applied = Migrations.migrate(pool.dataSource());
                if (applied > 0) {
                    spec.commandLine().getErr().println("tasktable: applied " + applied + " migration(s) to " + url);
                }
            }
            TaskMetrics metrics = new TaskMetrics();
            Worker worker = workers == 0 ? null : Worker.start(pool, BuiltinHandlers.all(),
                    WorkerOptions.defaults().withConcurrency(workers).withQueues(queues), metrics);
            TaskServer server = TaskServer.start(pool.dataSource(), options, metrics);
            Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().unstarted(() -> {
                // Stop taking requests first, then let the worker finish or hand back its tasks.
                server.close();
                if (worker != null) {
                    worker.close();
                }
                stopped.countDown();
            }));
            spec.commandLine().getOut().println("tasktable: serving http://" + options.host() + ":" + server.port()
                    + "/ (database " + url + (worker == null ? "" : ", worker " + worker.id()) + ")");
            spec.commandLine().getOut().flush();
            stopped.await();
        }
        return Cli.EXIT_OK;
    }
}
