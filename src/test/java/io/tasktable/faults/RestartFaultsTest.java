package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.server.ServerOptions;
import io.tasktable.server.TaskMetrics;
import io.tasktable.server.TaskServer;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * Scenario 3: PostgreSQL restarted during a drain; two worker processes and the HTTP server reconnect by
 * themselves. It restarts the shared local server, so it is tagged {@code restart}: excluded from the default
 * run and run by {@code .ci/run} after every other test ({@code mvn surefire:test -Dgroups=restart
 * -Dtasktable.excludedGroups=none}). The server is left running.
 */
@Tag("restart")
@ExtendWith(TestDatabase.Extension.class)
class RestartFaultsTest {

    private final TestDatabase db;

    RestartFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void a_postgresql_restart_mid_drain_loses_no_task_and_everyone_reconnects() throws Exception {
        int tasks = Faults.count(2_000, 20_000);
        int restarts = Faults.count(1, 3);
        HttpClient http = HttpClient.newHttpClient();
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool serverPool = ConnectionPool.open(db.url(), "tt-restart-server", ConnectionPool.DEFAULT_SIZE)) {
            TaskServer server = TaskServer.start(serverPool.dataSource(), ServerOptions.defaults().withPort(0), new TaskMetrics());
            try {
                List<Long> ids = h.enqueueRecords(tasks, 2);
                List<String> apps = List.of("tt-restart-a", "tt-restart-b");
                for (String app : apps) {
                    h.startWorker(app, 16, Duration.ofMinutes(5));
                }
                Duration worst = Duration.ZERO;
                for (int r = 0; r < restarts; r++) {
                    long target = (long) tasks * (r + 1) / (restarts + 2);
                    within(Duration.ofMinutes(2)).until(() -> h.succeeded(ids) >= target);
                    long restartedAt = System.nanoTime();
                    restartPostgres();
                    within(Duration.ofMinutes(2)).ignoreExceptions().until(() -> h.reconnect().succeeded(ids) > target);
                    within(Duration.ofMinutes(1)).ignoreExceptions().until(() -> http.send(HttpRequest.newBuilder(
                            URI.create("http://127.0.0.1:" + server.port() + "/health/ready")).build(),
                            BodyHandlers.ofString()).statusCode() == 200);
                    Duration recovery = Duration.ofNanos(System.nanoTime() - restartedAt);
                    worst = recovery.compareTo(worst) > 0 ? recovery : worst;
                }
                within(Duration.ofMinutes(3)).until(() -> h.unfinished(ids) == 0);
                within(Duration.ofSeconds(30)).until(() -> apps.stream().allMatch(app -> {
                    try {
                        return !Workers.listeningBackends(h.c, app).isEmpty();
                    } catch (java.sql.SQLException e) {
                        return false;
                    }
                }));
                assertThat(http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/api/tasks?limit=1"))
                        .build(), BodyHandlers.ofString()).statusCode()).isEqualTo(200);
                Ledger.Result result = h.ledger.account("3 PostgreSQL restarted mid-drain", restarts, ids, worst);
                assertThat(result.lost()).isZero();
                assertThat(result.completedTwice()).isZero();
                assertThat(h.ledger.states(ids)).isEqualTo(Map.of("succeeded", (long) tasks));
            } finally {
                server.close();
                http.close();
            }
        }
    }

    /** pg_ctlcluster restart of the one local cluster (Debian layout: /etc/postgresql/VERSION/main). */
    private static void restartPostgres() throws Exception {
        String version;
        try (Stream<Path> versions = Files.list(Path.of("/etc/postgresql"))) {
            version = versions.map(p -> p.getFileName().toString()).sorted().findFirst().orElseThrow();
        }
        Process restart = new ProcessBuilder("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
                .inheritIO().start();
        assertThat(restart.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(restart.exitValue()).isZero();
    }
}
