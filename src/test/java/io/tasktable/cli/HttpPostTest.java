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

    /** /status/N answers N; /slow answers 200 only when the test ends. */
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
