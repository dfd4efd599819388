package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.sql.Connection;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.sun.net.httpserver.HttpServer;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * examples/slim-server, run as users run it (the single-file program on the classpath): a deferred signup
 * answers while the mail API is still stuck, and the mail is sent once afterwards; an inline signup waits for it.
 */
@ExtendWith(TestDatabase.Extension.class)
class SlimServerExampleTest {

    private static final Path PROGRAM = Path.of("examples", "slim-server", "SlimServer.java");

    private final TestDatabase db;
    private final HttpClient http = HttpClient.newHttpClient();
    private final CountDownLatch mailApiReleased = new CountDownLatch(1);
    private final CountDownLatch mailApiEntered = new CountDownLatch(1);
    private final AtomicInteger mailsSent = new AtomicInteger();
    private HttpServer mailApi;
    private Process slimServer;

    SlimServerExampleTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void blockingMailApi() throws Exception {
        db.reset();
        try (Connection c = db.connect()) {
            Sql.update(c, "DROP TABLE IF EXISTS slim_user");
        }
        mailApi = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        mailApi.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        mailApi.createContext("/send", exchange -> {
            exchange.getRequestBody().readAllBytes();
            mailApiEntered.countDown();
            try {
                mailApiReleased.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            mailsSent.incrementAndGet();
            exchange.sendResponseHeaders(202, -1);
            exchange.close();
        });
        mailApi.start();
    }

    @AfterEach
    void stop() throws InterruptedException {
        mailApiReleased.countDown();
        if (slimServer != null) {
            slimServer.destroy();
            slimServer.waitFor(20, TimeUnit.SECONDS);
            slimServer.destroyForcibly();
        }
        mailApi.stop(0);
        http.close();
    }

    private ProcessBuilder program(String... args) {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> command = new java.util.ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"),
                PROGRAM.toString()));
        command.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(command);
        DatabaseUrl u = db.url();
        builder.environment().put(DatabaseUrl.ENV, "postgresql://" + u.user() + "@" + u.host() + ":" + u.port() + "/" + u.database());
        return builder;
    }

    /** Starts the example server and returns its port, read from its first line. */
    private int startSlimServer(String mode) throws Exception {
        slimServer = program("serve", "--mode", mode, "--port", "0",
                "--mail-url", "http://127.0.0.1:" + mailApi.getAddress().getPort() + "/send")
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String banner = new BufferedReader(new InputStreamReader(slimServer.getInputStream(), StandardCharsets.UTF_8)).readLine();
        Matcher port = Pattern.compile("on http://127\\.0\\.0\\.1:(\\d+)/signup").matcher(String.valueOf(banner));
        assertThat(port.find()).as("banner: %s", banner).isTrue();
        return Integer.parseInt(port.group(1));
    }

    private CompletableFuture<HttpResponse<String>> signup(int port, String email) {
        return http.sendAsync(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/signup"))
                .POST(HttpRequest.BodyPublishers.ofString("{\"email\": \"" + email + "\"}")).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void a_deferred_signup_answers_while_the_mail_api_is_stuck_and_the_mail_goes_out_once() throws Exception {
        int port = startSlimServer("deferred");

        HttpResponse<String> response = signup(port, "ada@example.com").get(30, TimeUnit.SECONDS);

        assertThat(response.statusCode()).isEqualTo(201);
        assertThat(mailsSent).as("no mail sent yet: the mail API is still stuck").hasValue(0);
        try (Connection c = db.connect()) {
            assertThat(Sql.count(c, "SELECT count(*) FROM slim_user WHERE email = 'ada@example.com'")).isEqualTo(1);
            assertThat(mailApiEntered.await(30, TimeUnit.SECONDS)).as("the worker is sending the mail").isTrue();
            mailApiReleased.countDown();
            await().atMost(Duration.ofSeconds(30)).until(() ->
                    Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE kind = 'send_welcome_email' AND state = 'succeeded'") == 1);
        }
        assertThat(mailsSent).hasValue(1);
    }

    @Test
    void an_inline_signup_waits_for_the_mail_api() throws Exception {
        int port = startSlimServer("inline");

        CompletableFuture<HttpResponse<String>> response = signup(port, "bo@example.com");

        assertThat(mailApiEntered.await(30, TimeUnit.SECONDS)).isTrue();
        assertThat(response).as("the request cannot finish while the mail API holds it").isNotDone();
        mailApiReleased.countDown();
        assertThat(response.get(30, TimeUnit.SECONDS).statusCode()).isEqualTo(201);
        assertThat(mailsSent).hasValue(1);
    }

    @Test
    void measure_prints_latency_percentiles_for_both_modes() throws Exception {
        mailApiReleased.countDown();
        Process measure = program("measure", "--signups", "20").redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String output = new String(measure.getInputStream().readAllBytes(), StandardCharsets.UTF_8);

        assertThat(measure.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(measure.exitValue()).as(output).isZero();
        assertThat(output).containsPattern("(?m)^deferred\\s+20\\s+[0-9.]+\\s+[0-9.]+\\s+[0-9.]+$")
                .containsPattern("(?m)^inline\\s+20\\s+[0-9.]+\\s+[0-9.]+\\s+[0-9.]+$");
    }
}
