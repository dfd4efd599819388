package io.tasktable.cli;

import static io.tasktable.testing.Workers.FAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import io.tasktable.ConnectionPool;
import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.Worker;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * The built-in kinds through a real worker, and {@code http.post} against a real HTTP server: which answers
 * complete, retry, or end the task. Tasks get two attempts, so a retryable failure shows as a second request
 * (and dead at attempt 2) and a final one as a single request (dead at attempt 1).
 */
@ExtendWith(TestDatabase.Extension.class)
class HttpPostTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    record Received(String path, String idempotencyKey, String contentType, String signature, String body) {
    }

    private final TestDatabase db;
    private final Queue<Received> received = new ConcurrentLinkedQueue<>();
    private final CountDownLatch releaseSlowAnswers = new CountDownLatch(1);
    private HttpServer server;
    private Connection c;
    private ConnectionPool pool;
    private Worker worker;
    private TaskClient client;

    HttpPostTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void setUp() throws IOException, SQLException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        server.createContext("/", this::answer);
        server.start();
        db.reset();
        c = db.connect();
        Workers.fastBackoff(c);
        pool = ConnectionPool.open(db.url(), "tasktable-http-test", ConnectionPool.DEFAULT_SIZE);
        client = new TaskClient(pool.dataSource());
        worker = Worker.start(pool, BuiltinHandlers.all(), FAST);
    }

    @AfterEach
    void tearDown() throws SQLException {
        releaseSlowAnswers.countDown();
        worker.close();
        pool.close();
        server.stop(0);
        c.close();
    }

    /** /status/N answers N (with ?retry-after=V, a Retry-After header); /slow answers 200 only when the test ends. */
    private void answer(HttpExchange exchange) throws IOException {
        String path = exchange.getRequestURI().getPath();
        received.add(new Received(path, exchange.getRequestHeaders().getFirst("Idempotency-Key"),
                exchange.getRequestHeaders().getFirst("Content-Type"), exchange.getRequestHeaders().getFirst("X-Signature"),
                new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8)));
        if (path.equals("/slow")) {
            try {
                releaseSlowAnswers.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        int status = path.startsWith("/status/") ? Integer.parseInt(path.substring("/status/".length())) : 200;
        String query = exchange.getRequestURI().getQuery();
        if (query != null && query.startsWith("retry-after=")) {
            String retryAfter = query.substring("retry-after=".length());
            exchange.getResponseHeaders().set("Retry-After", retryAfter.equals("in-an-hour")
                    ? DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now(ZoneOffset.UTC).plusHours(1))
                    : retryAfter);
        }
        byte[] body = ("answer " + status).getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, body.length);
        exchange.getResponseBody().write(body);
        exchange.close();
    }

    private String url(String path) {
        return "http://127.0.0.1:" + server.getAddress().getPort() + path;
    }

    private long post(String url, String extra) {
        return client.enqueue(NewTask.of("http.post", "{\"url\": \"" + url + "\"" + extra + "}").withMaxAttempts(2));
    }

    private Map<String, Object> awaitFinal(long id) throws SQLException {
        await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20))
                .until(() -> List.of("succeeded", "dead").contains(Sql.state(c, id)));
        return Sql.task(c, id);
    }

    private List<Received> requestsTo(String path) {
        return received.stream().filter(r -> r.path().equals(path)).toList();
    }

    @Test
    void a_2xx_answer_completes_the_task_and_the_receiver_gets_the_json_body_and_an_idempotency_key() throws Exception {
        long id = post(url("/status/200"), ", \"body\": {\"event\": \"paid\", \"amount\": 5}, \"headers\": {\"X-Signature\": \"s1\"}");

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("succeeded");
        assertThat(task.get("result")).hasToString("{\"status\": 200}");
        assertThat(requestsTo("/status/200")).singleElement().satisfies(request -> {
            assertThat(request.idempotencyKey()).isEqualTo("tasktable-" + id);
            assertThat(request.contentType()).isEqualTo("application/json");
            assertThat(request.signature()).isEqualTo("s1");
            assertThat(JSON.readTree(request.body())).isEqualTo(JSON.readTree("{\"event\": \"paid\", \"amount\": 5}"));
        });
    }

    @ParameterizedTest
    @ValueSource(ints = {500, 503, 408, 429})
    void server_errors_timeouts_and_rate_limits_are_retried_with_the_same_idempotency_key(int status) throws Exception {
        long id = post(url("/status/" + status), "");

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("attempt", 2);
        assertThat((String) task.get("last_error")).startsWith("POST " + url("/status/" + status) + " answered " + status
                + ": answer " + status);
        assertThat(requestsTo("/status/" + status)).hasSize(2)
                .allSatisfy(r -> assertThat(r.idempotencyKey()).isEqualTo("tasktable-" + id));
    }

    @ParameterizedTest
    @ValueSource(ints = {400, 404, 410, 301})
    void other_client_errors_and_redirects_end_the_task_without_retry(int status) throws Exception {
        long id = post(url("/status/" + status), "");

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("attempt", 1);
        assertThat((String) task.get("last_error")).startsWith("POST " + url("/status/" + status) + " answered " + status);
        assertThat(requestsTo("/status/" + status)).hasSize(1);
    }

    /** The task queued again after its first attempt failed: how long after that attempt started it runs again. */
    private Duration nextAttemptAfterFirst(long id) throws SQLException {
        await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20)).until(() -> Sql.count(c,
                "SELECT count(*) FROM tasktable.task WHERE id = ? AND state = 'queued' AND attempt = 1", id) == 1);
        double seconds = ((Number) Sql.value(c,
                "SELECT date_part('epoch', run_at - started_at) FROM tasktable.task WHERE id = ?", id)).doubleValue();
        return Duration.ofMillis(Math.round(seconds * 1000));
    }

    @ParameterizedTest
    @ValueSource(ints = {429, 503})
    void a_retry_after_in_seconds_puts_the_next_attempt_that_far_ahead(int status) throws Exception {
        long id = post(url("/status/" + status + "?retry-after=3"), "");

        // the queue's own backoff is 10 ms here; the attempt itself took milliseconds
        assertThat(nextAttemptAfterFirst(id)).isBetween(Duration.ofSeconds(3), Duration.ofSeconds(5));
        assertThat((String) Sql.task(c, id).get("last_error"))
                .startsWith("POST " + url("/status/" + status) + "?retry-after=3 answered " + status);
    }

    @Test
    void a_retry_after_date_puts_the_next_attempt_at_that_date() throws Exception {
        long id = post(url("/status/503?retry-after=in-an-hour"), "");

        assertThat(nextAttemptAfterFirst(id)).isBetween(Duration.ofMinutes(59), Duration.ofMinutes(61));
    }

    @Test
    void a_retry_after_beyond_a_day_is_cut_to_a_day() throws Exception {
        long id = post(url("/status/429?retry-after=99999999999"), "");

        assertThat(nextAttemptAfterFirst(id))
                .isBetween(HttpPost.MAX_RETRY_AFTER.minusSeconds(5), HttpPost.MAX_RETRY_AFTER.plusSeconds(5));
    }

    @Test
    void an_unreadable_retry_after_leaves_the_queues_backoff() throws Exception {
        Sql.update(c, "UPDATE tasktable.queue SET backoff_base = '1 minute', backoff_cap = '1 minute', "
                + "backoff_jitter = 0");
        long id = post(url("/status/503?retry-after=soon"), "");

        assertThat(nextAttemptAfterFirst(id)).isBetween(Duration.ofMinutes(1), Duration.ofSeconds(62));
    }

    @Test
    void retry_after_reads_seconds_and_http_dates() {
        assertThat(HttpPost.retryAfter("120")).contains(Duration.ofSeconds(120));
        assertThat(HttpPost.retryAfter(" 0 ")).contains(Duration.ZERO);
        assertThat(HttpPost.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT")).contains(Duration.ZERO); // past: at once
        assertThat(HttpPost.retryAfter("99999999999")).contains(HttpPost.MAX_RETRY_AFTER);
        assertThat(HttpPost.retryAfter("-5")).isEmpty();
        assertThat(HttpPost.retryAfter("1.5")).isEmpty();
        assertThat(HttpPost.retryAfter("")).isEmpty();
        assertThat(HttpPost.retryAfter("tomorrow")).isEmpty();
    }

    @Test
    void a_refused_connection_is_retried() throws Exception {
        int closedPort;
        try (ServerSocket socket = new ServerSocket(0)) {
            closedPort = socket.getLocalPort();
        }
        long id = post("http://127.0.0.1:" + closedPort + "/hook", "");

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("attempt", 2);
        assertThat((String) task.get("last_error")).startsWith("java.net.ConnectException");
    }

    @Test
    void a_receiver_slower_than_the_timeout_is_retried() throws Exception {
        long id = post(url("/slow"), ", \"timeout_ms\": 200");

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("attempt", 2);
        assertThat((String) task.get("last_error")).startsWith("java.net.http.HttpTimeoutException");
        assertThat(requestsTo("/slow")).hasSize(2);
    }

    @Test
    void a_payload_without_a_usable_url_ends_the_task_without_retry() throws Exception {
        long id = client.enqueue(NewTask.of("http.post", "{\"url\": \"ftp://example.com/x\"}").withMaxAttempts(2));

        Map<String, Object> task = awaitFinal(id);

        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("attempt", 1);
        assertThat((String) task.get("last_error")).contains("payload needs an http(s) 'url'");
    }

    @Test
    void the_other_built_in_kinds_do_what_they_say() throws Exception {
        long noop = client.enqueue(NewTask.of("noop", "{}"));
        long sleep = client.enqueue(NewTask.of("sleep", "{\"ms\": 10}"));
        long fail = client.enqueue(NewTask.of("fail", "{\"message\": \"as asked\"}").withMaxAttempts(2));
        long badSleep = client.enqueue(NewTask.of("sleep", "{\"ms\": \"soon\"}").withMaxAttempts(2));

        assertThat(awaitFinal(noop).get("state")).hasToString("succeeded");
        assertThat(awaitFinal(sleep).get("state")).hasToString("succeeded");
        assertThat(awaitFinal(fail)).containsEntry("attempt", 2);
        assertThat((String) Sql.task(c, fail).get("last_error"))
                .startsWith("java.lang.IllegalStateException: task " + fail + " of kind 'fail' fails on purpose: as asked");
        assertThat(awaitFinal(badSleep)).containsEntry("attempt", 1);
        assertThat((String) Sql.task(c, badSleep).get("last_error")).contains("payload needs a non-negative integer 'ms'");
    }
}
