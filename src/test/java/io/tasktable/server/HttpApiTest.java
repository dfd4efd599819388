package io.tasktable.server;

import static io.tasktable.db.Tables.TASK;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.List;
import java.util.stream.LongStream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.jooq.DSLContext;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.db.enums.TaskState;
import io.tasktable.testing.MigrationFiles;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** The JSON API over real HTTP against a real database; the server runs on a random port. */
@ExtendWith(TestDatabase.Extension.class)
class HttpApiTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private final TestDatabase db;
    private final HttpClient http = HttpClient.newHttpClient();
    private TaskServer server;

    HttpApiTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void startServer() throws SQLException {
        db.reset();
        server = TaskServer.start(db.dataSource(), ServerOptions.defaults().withPort(0).withMaxBodyBytes(64 * 1024),
                new TaskMetrics());
    }

    @AfterEach
    void stopServer() {
        server.close();
        http.close();
    }

    record Reply(int status, String contentType, JsonNode body, String text) {
    }

    Reply send(String method, String path, String json) throws IOException, InterruptedException {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path));
        if (json == null) {
            request.method(method, BodyPublishers.noBody());
        } else {
            request.header("Content-Type", "application/json").method(method, BodyPublishers.ofString(json));
        }
        return reply(http.send(request.build(), BodyHandlers.ofString()));
    }

    static Reply reply(HttpResponse<String> response) throws IOException {
        String type = response.headers().firstValue("Content-Type").orElse("");
        JsonNode body = type.contains("json") && !response.body().isEmpty() ? JSON.readTree(response.body()) : null;
        return new Reply(response.statusCode(), type, body, response.body());
    }

    private static void assertProblem(Reply reply, int status, String type) {
        assertThat(reply.status()).as(reply.text()).isEqualTo(status);
        assertThat(reply.contentType()).startsWith("application/problem+json");
        assertThat(reply.body().get("status").asInt()).isEqualTo(status);
        assertThat(reply.body().get("type").asText()).endsWith("/" + type);
        assertThat(reply.body().get("detail").asText()).isNotBlank();
    }

    private long taskCount() throws SQLException {
        try (Connection c = db.connect()) {
            return Sql.count(c, "SELECT count(*) FROM tasktable.task");
        }
    }

    @Test
    void a_posted_task_can_be_read_back() throws Exception {
        Reply created = send("POST", "/api/tasks",
                "{\"kind\": \"send_email\", \"payload\": {\"to\": \"a@example.com\"}, \"priority\": 3}");

        assertThat(created.status()).isEqualTo(201);
        long id = created.body().get("id").asLong();
        Reply task = send("GET", "/api/tasks/" + id, null);
        assertThat(task.status()).isEqualTo(200);
        assertThat(task.body().get("kind").asText()).isEqualTo("send_email");
        assertThat(task.body().get("payload").get("to").asText()).isEqualTo("a@example.com");
        assertThat(task.body().get("state").asText()).isEqualTo("queued");
        assertThat(task.body().get("priority").asInt()).isEqualTo(3);
    }

    @Test
    void an_array_of_tasks_is_enqueued_in_one_call_with_ids_in_order() throws Exception {
        Reply created = send("POST", "/api/tasks", "[{\"kind\": \"a\"}, {\"kind\": \"b\"}, {\"kind\": \"c\"}]");

        assertThat(created.status()).isEqualTo(201);
        JsonNode ids = created.body().get("ids");
        assertThat(ids).hasSize(3);
        assertThat(send("GET", "/api/tasks/" + ids.get(2).asLong(), null).body().get("kind").asText()).isEqualTo("c");
    }

    @Test
    void tasks_are_listed_newest_first_with_filters_and_keyset_pages() throws Exception {
        for (int i = 0; i < 5; i++) {
            send("POST", "/api/tasks", "{\"kind\": \"" + (i % 2 == 0 ? "even" : "odd") + "\"}");
        }

        Reply page1 = send("GET", "/api/tasks?kind=even&limit=2", null);
        assertThat(page1.body().get("tasks")).extracting(t -> t.get("id").asLong()).containsExactly(5L, 3L);
        long next = page1.body().get("next_before").asLong();
        Reply page2 = send("GET", "/api/tasks?kind=even&limit=2&before=" + next, null);
        assertThat(page2.body().get("tasks")).extracting(t -> t.get("id").asLong()).containsExactly(1L);
        assertThat(page2.body().get("next_before").isNull()).isTrue();
        assertThat(send("GET", "/api/tasks?state=running", null).body().get("tasks")).isEmpty();
        assertProblem(send("GET", "/api/tasks?state=sleeping", null), 400, "invalid-request");
        assertProblem(send("GET", "/api/tasks?limit=0", null), 400, "invalid-request");
    }

    /**
     * Running tasks are the oldest ids: a page of them read by id backwards would step over every queued task. The
     * page's query (ApiService.taskPage) reads them through task_lease_idx and sorts them; it fails without that
     * (checked: 505 pages, task_pkey read backwards past 27,000 queued tasks).
     */
    @Test
    void a_page_of_running_tasks_reads_them_and_not_the_queued_ones() throws Exception {
        try (Connection c = db.connect()) {
            Sql.value(c, "SELECT cardinality(tasktable.enqueue_tasks(ARRAY(SELECT ROW('noop', NULL, NULL, NULL, NULL, NULL, NULL)"
                    + "::tasktable.task_spec FROM generate_series(1, 30000))))");
            Sql.count(c, "SELECT count(*) FROM tasktable.claim_tasks(3000, 'test-worker')");
            Sql.update(c, "ANALYZE tasktable.live_task");
            long newestRunning = Sql.count(c, "SELECT max(id) FROM tasktable.task WHERE state = 'running'");

            Reply page1 = send("GET", "/api/tasks?state=running&limit=10", null);
            assertThat(page1.body().get("tasks")).extracting(t -> t.get("id").asLong())
                    .containsExactlyElementsOf(LongStream.iterate(newestRunning, id -> id - 1).limit(10).boxed().toList());
            assertThat(page1.body().get("tasks")).allSatisfy(t -> assertThat(t.get("state").asText()).isEqualTo("running"));
            Reply page2 = send("GET", "/api/tasks?state=running&limit=10&before=" + page1.body().get("next_before").asLong(), null);
            assertThat(page2.body().get("tasks").get(0).get("id").asLong()).isEqualTo(newestRunning - 10);

            DSLContext dsl = DSL.using(c, SQLDialect.POSTGRES);
            String page = dsl.renderInlined(ApiService.taskPage(dsl,
                    List.of(TASK.STATE.eq(DSL.inline(TaskState.running))), TaskState.running, 11));
            JsonNode plan = JSON.readTree(String.valueOf(Sql.value(c, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + page)))
                    .get(0).get("Plan");
            long pages = plan.get("Shared Hit Blocks").asLong() + plan.get("Shared Read Blocks").asLong();
            assertThat(pages).as("pages read for a page of running tasks, query %s, plan %s", page, plan).isLessThanOrEqualTo(80);
        }
    }

    @Test
    void cancel_and_retry_change_the_state_or_answer_409() throws Exception {
        long id = send("POST", "/api/tasks", "{\"kind\": \"a\"}").body().get("id").asLong();

        assertProblem(send("POST", "/api/tasks/" + id + "/retry", null), 409, "illegal-state-change");
        Reply cancelled = send("POST", "/api/tasks/" + id + "/cancel", null);
        assertThat(cancelled.body().get("state").asText()).isEqualTo("cancelled");
        Reply retried = send("POST", "/api/tasks/" + id + "/retry", null);
        assertThat(retried.status()).isEqualTo(200);
        assertThat(retried.body().get("state").asText()).isEqualTo("queued");
    }

    @Test
    void unknown_tasks_and_queues_are_404() throws Exception {
        assertProblem(send("GET", "/api/tasks/424242", null), 404, "not-found");
        assertProblem(send("POST", "/api/tasks/424242/cancel", null), 404, "unknown-task");
        assertProblem(send("GET", "/api/queues/nope", null), 404, "not-found");
        assertProblem(send("PATCH", "/api/queues/nope", "{\"paused\": true}"), 404, "not-found");
        assertProblem(send("GET", "/api/tasks/abc", null), 400, "invalid-request");
        assertProblem(send("GET", "/no/such/endpoint", null), 404, "not-found");
    }

    @Test
    void bad_bodies_get_problems_and_enqueue_nothing() throws Exception {
        assertProblem(send("POST", "/api/tasks", "{\"kind\": "), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"payload\": {}}"), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"queu\": \"x\"}"), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"payload\": 42}"), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"priority\": \"high\"}"), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"run_at\": \"tomorrow\"}"), 400, "invalid-request");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"priority\": 5000}"), 422, "invalid-task");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"\"}"), 422, "invalid-task");
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"queue\": \"nope\"}"), 422, "unknown-queue");
        assertProblem(send("POST", "/api/tasks", "[{\"kind\": \"a\"}, {\"kind\": 7}]"), 400, "invalid-request");
        // regression: PostgreSQL's own refusal of a value (SQLSTATE 22P05) was a 500
        assertProblem(send("POST", "/api/tasks", "{\"kind\": \"a\", \"payload\": {\"s\": \"\\u0000\"}}"), 422, "invalid-value");
        assertThat(taskCount()).isZero();
    }

    @Test
    void a_body_that_is_not_json_is_415() throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/api/tasks"))
                .header("Content-Type", "text/plain").POST(BodyPublishers.ofString("kind=a")).build();

        assertProblem(reply(http.send(request, BodyHandlers.ofString())), 415, "unsupported-media-type");
    }

    @Test
    void a_body_over_the_limit_is_413_and_enqueues_nothing() throws Exception {
        String big = "{\"kind\": \"a\", \"payload\": {\"blob\": \"" + "x".repeat(100_000) + "\"}}";

        assertProblem(send("POST", "/api/tasks", big), 413, "body-too-large");

        HttpRequest chunked = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/api/tasks"))
                .header("Content-Type", "application/json")
                .POST(BodyPublishers.ofInputStream(() -> new java.io.ByteArrayInputStream(big.getBytes()))).build();
        assertProblem(reply(http.send(chunked, BodyHandlers.ofString())), 413, "body-too-large");
        assertThat(taskCount()).isZero();
    }

    @Test
    void queues_show_their_policy_and_counts_and_can_be_patched_created_paused() throws Exception {
        send("POST", "/api/tasks", "{\"kind\": \"a\"}");

        Reply queues = send("GET", "/api/queues", null);
        JsonNode first = queues.body().get("queues").get(0);
        assertThat(first.get("name").asText()).isEqualTo("default");
        assertThat(first.get("counts").get("ready").asInt()).isEqualTo(1);
        assertThat(first.get("lease").asDouble()).isEqualTo(30.0);

        Reply patched = send("PATCH", "/api/queues/default", "{\"paused\": true, \"max_attempts\": 3, \"lease\": 90}");
        assertThat(patched.status()).isEqualTo(200);
        assertThat(patched.body().get("paused").asBoolean()).isTrue();
        assertThat(patched.body().get("max_attempts").asInt()).isEqualTo(3);
        assertThat(patched.body().get("lease").asDouble()).isEqualTo(90.0);

        assertProblem(send("PATCH", "/api/queues/default", "{\"max_attempts\": 0}"), 422, "invalid-value");
        assertProblem(send("PATCH", "/api/queues/default", "{\"paused\": \"yes\"}"), 400, "invalid-request");
        assertProblem(send("PATCH", "/api/queues/default", "{\"colour\": \"red\"}"), 400, "invalid-request");

        Reply created = send("POST", "/api/queues", "{\"name\": \"mail\", \"max_attempts\": 5}");
        assertThat(created.status()).isEqualTo(201);
        assertThat(created.body().get("max_attempts").asInt()).isEqualTo(5);
        assertProblem(send("POST", "/api/queues", "{\"name\": \"mail\"}"), 409, "already-exists");
        assertProblem(send("POST", "/api/queues", "{\"name\": \"bad name!\"}"), 422, "invalid-value");
    }

    @Test
    void throughput_counts_finished_tasks_per_minute() throws Exception {
        long id = send("POST", "/api/tasks", "{\"kind\": \"a\"}").body().get("id").asLong();
        send("POST", "/api/tasks/" + id + "/cancel", null);

        JsonNode minutes = send("GET", "/api/throughput", null).body().get("minutes");

        assertThat(minutes).hasSize(1);
        assertThat(minutes.get(0).get("cancelled").asInt()).isEqualTo(1);
    }

    @Test
    void health_says_live_and_ready_with_a_current_schema() throws Exception {
        Reply ready = send("GET", "/health/ready", null);
        assertThat(ready.status()).as(ready.text()).isEqualTo(200);
        assertThat(ready.text()).contains("UP").contains("migrations").contains("current");
        assertThat(send("GET", "/health/live", null).status()).isEqualTo(200);
        assertThat(send("GET", "/health", null).status()).isEqualTo(200);
    }

    @Test
    void readiness_is_down_while_the_schema_has_pending_migrations() throws Exception {
        io.tasktable.DatabaseUrl empty = db.createEmptyDatabase();
        try (TaskServer fresh = TaskServer.start(empty.dataSource("tasktable-test"), ServerOptions.defaults().withPort(0), new TaskMetrics())) {
            HttpResponse<String> ready = http.send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + fresh.port() + "/health/ready")).build(), BodyHandlers.ofString());
            HttpResponse<String> live = http.send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + fresh.port() + "/health/live")).build(), BodyHandlers.ofString());

            assertThat(ready.statusCode()).isEqualTo(503);
            assertThat(ready.body()).contains("\"schema\":\"pending " + MigrationFiles.count() + "\"");
            assertThat(live.statusCode()).isEqualTo(200);
        }
    }

    @Test
    void metrics_are_prometheus_text_with_queue_depth_and_counters() throws Exception {
        send("POST", "/api/tasks", "[{\"kind\": \"a\"}, {\"kind\": \"b\"}]");

        Reply metrics = send("GET", "/metrics", null);

        assertThat(metrics.status()).isEqualTo(200);
        assertThat(metrics.contentType()).startsWith("text/plain");
        assertThat(metrics.text()).contains("tasktable_tasks{queue=\"default\",state=\"ready\"} 2.0")
                .contains("tasktable_tasks_enqueued_total 2.0")
                .contains("tasktable_handler_duration_seconds_bucket");
    }

    @Test
    void the_dashboard_and_the_openapi_description_are_served() throws Exception {
        Reply page = send("GET", "/", null);
        assertThat(page.status()).isEqualTo(200);
        assertThat(page.text()).contains("tasktable");
        Reply openapi = send("GET", "/api/openapi.yaml", null);
        assertThat(openapi.status()).isEqualTo(200);
        assertThat(openapi.text()).startsWith("openapi:");
    }
}
