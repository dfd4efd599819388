package io.tasktable.cli;

import static io.tasktable.cli.MigrateCommandTest.tasktable;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import io.tasktable.DatabaseUrl;
import io.tasktable.testing.TestDatabase;

/** The command line as users run it: separate JVMs, DATABASE_URL, exit codes, one-line errors. */
@ExtendWith(TestDatabase.Extension.class)
class CliTest {

    private final TestDatabase db;
    private Map<String, String> env;

    CliTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void emptyQueue() throws Exception {
        db.reset();
        env = Map.of(DatabaseUrl.ENV, db.url().jdbcUrl() + "?user=" + db.url().user());
    }

    @ParameterizedTest
    @ValueSource(strings = {"migrate", "serve", "enqueue", "stats"})
    void every_command_explains_itself_with_help(String command) throws Exception {
        MigrateCommandTest.Run run = tasktable(Map.of(), command, "--help");

        assertThat(run.exitCode()).isZero();
        assertThat(run.stdout()).startsWith("Usage: tasktable " + command).contains("--help");
    }

    @ParameterizedTest
    @ValueSource(strings = {"migrate", "enqueue", "stats"})
    void an_unreachable_database_is_one_line_and_a_failure_status(String command) throws Exception {
        List<String> args = command.equals("enqueue") ? List.of(command, "noop") : List.of(command);

        MigrateCommandTest.Run run = tasktable(Map.of(DatabaseUrl.ENV, "postgresql://nobody@127.0.0.1:1/none"),
                args.toArray(String[]::new));

        assertThat(run.exitCode()).isEqualTo(1);
        assertThat(run.stderr().strip()).startsWith("tasktable: ").doesNotContain("\n");
    }

    @Test
    void enqueue_prints_the_id_and_stats_shows_the_task() throws Exception {
        MigrateCommandTest.Run enqueued = tasktable(env, "enqueue", "send_email", "{\"to\": \"a@example.com\"}", "--priority", "5");
        MigrateCommandTest.Run stats = tasktable(env, "stats");

        assertThat(enqueued.exitCode()).as(enqueued.stderr()).isZero();
        assertThat(enqueued.stdout().strip()).isEqualTo("1");
        assertThat(stats.exitCode()).as(stats.stderr()).isZero();
        assertThat(stats.stdout().lines().toList().get(0)).startsWith("QUEUE").contains("READY").contains("DEAD");
        assertThat(stats.stdout().lines().filter(l -> l.startsWith("default")).findFirst().orElseThrow())
                .matches("default\\s+no\\s+1\\s+0\\s+0\\s+0\\s+0\\s+0\\s+\\S+s");
    }

    @Test
    void bad_enqueue_input_is_a_usage_error_or_the_sql_message() throws Exception {
        MigrateCommandTest.Run badJson = tasktable(env, "enqueue", "k", "{nope");
        MigrateCommandTest.Run scalar = tasktable(env, "enqueue", "k", "42");
        MigrateCommandTest.Run badQueue = tasktable(env, "enqueue", "k", "--queue", "missing");

        assertThat(badJson.exitCode()).isEqualTo(2);
        assertThat(badJson.stderr()).startsWith("tasktable: PAYLOAD is not valid JSON");
        assertThat(scalar.exitCode()).isEqualTo(2);
        assertThat(badQueue.exitCode()).isEqualTo(1);
        assertThat(badQueue.stderr().strip()).isEqualTo("tasktable: unknown queue 'missing' "
                + "(Create it first: INSERT INTO tasktable.queue (name) VALUES ('missing');)");
    }

    @Test
    void serve_with_workers_runs_posted_tasks_reports_metrics_and_stops_on_sigterm() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        ProcessBuilder builder = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), Main.class.getName(),
                "serve", "--port", "0", "--workers", "4");
        builder.environment().putAll(env);
        builder.redirectError(ProcessBuilder.Redirect.DISCARD);
        Process server = builder.start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
            String banner = out.readLine();
            Matcher port = Pattern.compile("serving http://127\\.0\\.0\\.1:(\\d+)/").matcher(String.valueOf(banner));
            assertThat(port.find()).as("banner: %s", banner).isTrue();

            String base = "http://127.0.0.1:" + port.group(1);
            try (HttpClient http = HttpClient.newHttpClient()) {
                var ready = http.send(HttpRequest.newBuilder(URI.create(base + "/health/ready")).build(), BodyHandlers.ofString());
                assertThat(ready.statusCode()).isEqualTo(200);
                assertThat(ready.body()).contains("\"status\":\"UP\"");

                var posted = http.send(HttpRequest.newBuilder(URI.create(base + "/api/tasks"))
                        .header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString("[{\"kind\": \"noop\"}, {\"kind\": \"fail\", \"max_attempts\": 1}]"))
                        .build(), BodyHandlers.ofString());
                assertThat(posted.statusCode()).as(posted.body()).isEqualTo(201);
                await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> assertThat(
                        http.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).build(), BodyHandlers.ofString()).body())
                        .contains("tasktable_tasks_completed_total 1.0")
                        .contains("tasktable_tasks_failed_total 1.0")
                        .contains("tasktable_tasks{queue=\"default\",state=\"succeeded\"} 1.0")
                        .contains("tasktable_tasks{queue=\"default\",state=\"dead\"} 1.0")
                        .contains("tasktable_handler_duration_seconds_count 2"));
            }

            server.destroy();
            assertThat(server.waitFor(20, TimeUnit.SECONDS)).as("stopped after SIGTERM").isTrue();
        } finally {
            server.destroyForcibly();
        }
    }
}
