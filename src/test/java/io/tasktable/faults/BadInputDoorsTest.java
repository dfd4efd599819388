package io.tasktable.faults;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.tasktable.DatabaseUrl;
import io.tasktable.server.ServerOptions;
import io.tasktable.server.TaskMetrics;
import io.tasktable.server.TaskServer;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * Scenario 7: malformed input at the HTTP and CLI doors (the SQL door is {@code BadInputTest}). Each input gets
 * its documented error, and the tables are byte for byte what they were before. One table per door.
 */
@Tag("faults")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@ExtendWith(TestDatabase.Extension.class)
class BadInputDoorsTest {

    static final String INJECTION = "'; DROP TABLE tasktable.task; --";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final TestDatabase db;
    private final HttpClient http = HttpClient.newHttpClient();
    private TaskServer server;
    private Connection c;
    private String before;

    BadInputDoorsTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeAll
    void start() throws SQLException {
        db.reset();
        c = db.connect();
        Sql.value(c, "SELECT tasktable.enqueue_task('existing', '{\"keep\": true}')");
        // 2 MB of body: larger than the 1 MB payload limit of the SQL API, so both limits are reached
        server = TaskServer.start(db.dataSource(), ServerOptions.defaults().withPort(0).withMaxBodyBytes(2 * 1024 * 1024),
                new TaskMetrics());
        before = snapshot();
    }

    @AfterAll
    void stop() throws SQLException {
        server.close();
        http.close();
        c.close();
    }

    /** Every row of the task and queue tables, as text. */
    private String snapshot() throws SQLException {
        return Sql.value(c, "SELECT (SELECT string_agg(t::text, E'\\n' ORDER BY id) FROM tasktable.task t) || E'\\n' || "
                + "(SELECT string_agg(q::text, E'\\n' ORDER BY name) FROM tasktable.queue q)").toString();
    }

    static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    static Stream<Arguments> http() {
        String kind = "{\"kind\": \"a\", ";
        byte[] badUtf8 = {'{', '"', 'k', 'i', 'n', 'd', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}'};
        return Stream.of(
                // method, path, body (String or byte[]; null = none), status, problem type
                Arguments.of("POST", "/api/tasks", "{\"kind\": \"a\", \"queue\": \"" + INJECTION + "\"}", 422, "unknown-queue"),
                Arguments.of("POST", "/api/tasks", "{\"kind\": null}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", "{\"kind\": \"" + "k".repeat(256) + "\"}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", "{\"kind\": 7}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"payload\": \"text\"}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"payload\": {\"nul\": \"a\\u0000b\"}}", 422, "invalid-value"),
                Arguments.of("POST", "/api/tasks", kind + "\"payload\": {\"blob\": \"" + "x".repeat(1_100_000) + "\"}}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", "[" + (kind + "\"payload\": {}}, ").repeat(3) + "{\"kind\": \"\"}]", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", "{\"kind\": \"" + "x".repeat(10 * 1024 * 1024) + "\"}", 413, "body-too-large"),
                Arguments.of("POST", "/api/tasks", badUtf8, 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"priority\": -5000}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", kind + "\"priority\": 1.5}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"priority\": 99999999999}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"max_attempts\": -1}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", kind + "\"max_attempts\": 0}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", kind + "\"run_at\": \"tomorrow\"}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"run_at\": \"" + INJECTION + "\"}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", kind + "\"dedup_key\": \"\"}", 422, "invalid-task"),
                Arguments.of("POST", "/api/tasks", kind + "\"" + INJECTION + "\": 1}", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", "", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", "42", 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", "[".repeat(5_000) + "]".repeat(5_000), 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks", "[" + "{\"kind\": \"a\"},".repeat(10_000) + "{\"kind\": \"a\"}]", 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks/-1", null, 404, "not-found"),
                Arguments.of("GET", "/api/tasks/abc", null, 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks/99999999999999999999", null, 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks/" + enc("1; " + INJECTION), null, 400, "invalid-request"),
                Arguments.of("POST", "/api/tasks/-1/cancel", null, 404, "unknown-task"),
                Arguments.of("POST", "/api/tasks/0/retry", null, 404, "unknown-task"),
                Arguments.of("GET", "/api/tasks?limit=-1", null, 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks?limit=100000", null, 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks?state=" + enc(INJECTION), null, 400, "invalid-request"),
                Arguments.of("GET", "/api/tasks?before=" + enc(INJECTION), null, 400, "invalid-request"),
                Arguments.of("GET", "/api/queues/" + enc(INJECTION), null, 404, "not-found"),
                Arguments.of("PATCH", "/api/queues/default", "{\"max_attempts\": -1}", 422, "invalid-value"),
                Arguments.of("PATCH", "/api/queues/default", "{\"lease\": \"forever\"}", 400, "invalid-request"),
                Arguments.of("PATCH", "/api/queues/default", "{\"paused\": \"yes\"}", 400, "invalid-request"),
                Arguments.of("PATCH", "/api/queues/default", "{\"" + INJECTION + "\": 1}", 400, "invalid-request"),
                Arguments.of("PATCH", "/api/queues/" + enc(INJECTION), "{\"paused\": true}", 404, "not-found"),
                Arguments.of("POST", "/api/queues", "{\"name\": \"" + INJECTION + "\"}", 422, "invalid-value"),
                Arguments.of("POST", "/api/queues", "{\"name\": \"default\"}", 409, "already-exists"),
                Arguments.of("POST", "/api/queues", "{\"name\": null}", 400, "invalid-request"));
    }

    @ParameterizedTest(name = "{0} {1} -> {3} {4}")
    @MethodSource("http")
    void malformed_http_requests_get_their_problem_and_change_nothing(String method, String path, Object body,
                                                                      int status, String type) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path));
        if (body == null) {
            request.method(method, BodyPublishers.noBody());
        } else {
            byte[] bytes = body instanceof byte[] b ? b : ((String) body).getBytes(StandardCharsets.UTF_8);
            request.header("Content-Type", "application/json").method(method, BodyPublishers.ofByteArray(bytes));
        }
        HttpResponse<String> response = http.send(request.build(), BodyHandlers.ofString());

        assertThat(response.statusCode()).as(response.body()).isEqualTo(status);
        assertThat(response.headers().firstValue("Content-Type").orElse("")).startsWith("application/problem+json");
        JsonNode problem = JSON.readTree(response.body());
        assertThat(problem.get("type").asText()).endsWith("/" + type);
        assertThat(problem.get("detail").asText()).isNotBlank();
        assertThat(snapshot()).isEqualTo(before);
    }

    record Cli(int exitCode, String stderr) {
    }

    static List<List<String>> cli() {
        return List.of(
                // expected exit status first: 2 = usage error, 1 = refused by the database
                List.of("2", "enqueue", "a", "not json"),
                List.of("2", "enqueue", "a", "42"),
                List.of("2", "enqueue", "a", "{\"unterminated\": "),
                List.of("2", "enqueue", "a", "--priority", "high"),
                List.of("2", "enqueue", "a", "--priority", "99999999999"),
                List.of("2", "enqueue", "a", "--run-at", "tomorrow"),
                List.of("2", "enqueue", "a", "--run-at", INJECTION),
                List.of("2", "enqueue", "a", "--bogus"),
                List.of("2", "enqueue"),
                List.of("1", "enqueue", "a", "--priority", "-5000"),
                List.of("1", "enqueue", "a", "--max-attempts", "-1"),
                List.of("1", "enqueue", "a", "--queue", INJECTION),
                List.of("1", "enqueue", ""),
                List.of("1", "enqueue", "k".repeat(300)),
                List.of("1", "enqueue", "a", "--dedup-key", ""),
                List.of("1", "enqueue", "a", "{\"nul\": \"a\\u0000b\"}"),
                List.of("2", "work", "--concurrency", "-1"),
                List.of("2", "work", "--lease", "0s"),
                List.of("2", "work", "--poll-interval", INJECTION),
                List.of("1", "work", "--queues", INJECTION));
    }

    @org.junit.jupiter.api.Test
    void malformed_command_lines_get_one_line_errors_and_change_nothing() throws Exception {
        Map<String, String> env = Map.of(DatabaseUrl.ENV, db.url().jdbcUrl() + "?user=" + db.url().user());
        List<List<String>> cases = cli();
        List<Future<Cli>> runs = new ArrayList<>();
        // each case is a JVM of its own: two at a time
        try (ExecutorService pool = Executors.newFixedThreadPool(2)) {
            for (List<String> args : cases) {
                runs.add(pool.submit(() -> {
                    var run = io.tasktable.cli.CliRunner.tasktable(env, args.subList(1, args.size()).toArray(String[]::new));
                    return new Cli(run.exitCode(), run.stderr());
                }));
            }
        }
        for (int i = 0; i < cases.size(); i++) {
            Cli run = runs.get(i).get();
            assertThat(run.exitCode()).as(cases.get(i) + ": " + run.stderr()).isEqualTo(Integer.parseInt(cases.get(i).getFirst()));
            assertThat(run.stderr().strip()).as(cases.get(i).toString()).isNotEmpty();
            if (run.exitCode() == 1) {
                assertThat(run.stderr().strip()).as(cases.get(i).toString()).startsWith("tasktable: ").doesNotContain("\n");
            }
        }
        assertThat(snapshot()).isEqualTo(before);
    }
}
