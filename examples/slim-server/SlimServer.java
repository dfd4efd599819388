/*
 * The pattern tasktable exists for: a web endpoint whose whole body is one short transaction.
 *
 *   POST /signup {"email": "..."}  ->  INSERT the user and enqueue send_welcome_email, in one transaction.
 *
 * The slow part (the mail API, 200 ms per message here) runs later in a worker. For comparison, --mode inline
 * calls the mail API inside the request, the way many servers do. Run it from the repository root after
 * `mvn package -DskipTests`:
 *
 *   DATABASE_URL=... java -cp target/tasktable.jar examples/slim-server/SlimServer.java serve --mail-url URL [--mode inline]
 *   DATABASE_URL=... java -cp target/tasktable.jar examples/slim-server/SlimServer.java measure
 *
 * `measure` starts a mail API that takes 200 ms per message, runs both modes on random ports, sends the same
 * signups to each, and prints the endpoint's latency percentiles (the numbers in README.md).
 */

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpServer;

import org.jooq.DSLContext;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;

import io.helidon.http.Status;
import io.helidon.webserver.WebServer;
import io.tasktable.ConnectionPool;
import io.tasktable.DatabaseUrl;
import io.tasktable.Migrations;
import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.TaskResult;
import io.tasktable.Worker;
import io.tasktable.WorkerOptions;

public final class SlimServer implements AutoCloseable {

    enum Mode { DEFERRED, INLINE }

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private final WebServer server;
    private final Worker worker;

    private SlimServer(WebServer server, Worker worker) {
        this.server = server;
        this.worker = worker;
    }

    /** Starts the endpoint (and, when deferring, a worker that sends the mails). */
    static SlimServer start(ConnectionPool pool, Mode mode, int port, URI mailApi) {
        DSLContext db = DSL.using(pool.dataSource(), SQLDialect.POSTGRES);
        db.execute("CREATE TABLE IF NOT EXISTS slim_user (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                + "email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now())");
        Worker worker = mode == Mode.INLINE ? null : Worker.start(pool,
                Map.of("send_welcome_email", (task, context) -> {
                    sendMail(mailApi, task.payload().get("to").asText(), "welcome-" + task.id());
                    return TaskResult.success();
                }), WorkerOptions.defaults().withConcurrency(16));
        WebServer server = WebServer.builder().host("127.0.0.1").port(port).routing(r -> r.post("/signup", (req, res) -> {
            String email = JSON.readTree(req.content().as(String.class)).path("email").asText("");
            if (!email.contains("@")) {
                res.status(Status.BAD_REQUEST_400).send("{\"error\": \"email required\"}");
                return;
            }
            if (mode == Mode.DEFERRED) {
                // The whole endpoint: one transaction, two statements. The mail exists iff the user does.
                db.transaction(tx -> {
                    tx.dsl().execute("INSERT INTO slim_user (email) VALUES (?)", email);
                    TaskClient.enqueue(tx.dsl(), NewTask.of("send_welcome_email", JSON.createObjectNode().put("to", email).toString()));
                });
            } else {
                db.execute("INSERT INTO slim_user (email) VALUES (?)", email);
                sendMail(mailApi, email, "welcome-inline-" + email);
            }
            res.status(Status.CREATED_201).send("{\"ok\": true}");
        })).build().start();
        return new SlimServer(server, worker);
    }

    int port() {
        return server.port();
    }

    @Override
    public void close() {
        server.stop();
        if (worker != null) {
            worker.close();
        }
    }

    static void sendMail(URI mailApi, String to, String idempotencyKey) throws IOException, InterruptedException {
        HttpResponse<String> response = HTTP.send(HttpRequest.newBuilder(mailApi)
                .header("Content-Type", "application/json").header("Idempotency-Key", idempotencyKey)
                .POST(HttpRequest.BodyPublishers.ofString(JSON.createObjectNode().put("to", to).toString())).build(),
                HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() / 100 != 2) {
            throw new IOException("mail API answered " + response.statusCode());
        }
    }

    /** A stand-in for a mail provider's API that takes {@code delay} per message and counts what it got. */
    static HttpServer slowMailApi(Duration delay, AtomicInteger received) throws IOException {
        HttpServer mail = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        mail.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        mail.createContext("/send", exchange -> {
            exchange.getRequestBody().readAllBytes();
            try {
                Thread.sleep(delay);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            received.incrementAndGet();
            exchange.sendResponseHeaders(202, -1);
            exchange.close();
        });
        mail.start();
        return mail;
    }

    /** Sends {@code count} signups from {@code clients} concurrent clients; returns each request's latency in ms. */
    static double[] signups(int port, String prefix, int count, int clients) throws Exception {
        List<Double> latencies = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger next = new AtomicInteger();
        try (ExecutorService pool = Executors.newFixedThreadPool(clients)) {
            List<Future<?>> running = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                running.add(pool.submit(() -> {
                    for (int i; (i = next.getAndIncrement()) < count; ) {
                        long start = System.nanoTime();
                        HttpResponse<String> response = HTTP.send(HttpRequest.newBuilder(
                                        URI.create("http://127.0.0.1:" + port + "/signup"))
                                .POST(HttpRequest.BodyPublishers.ofString("{\"email\": \"" + prefix + i + "@example.com\"}"))
                                .build(), HttpResponse.BodyHandlers.ofString());
                        latencies.add((System.nanoTime() - start) / 1e6);
                        if (response.statusCode() != 201) {
                            throw new IllegalStateException("signup answered " + response.statusCode() + ": " + response.body());
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : running) {
                f.get();
            }
        }
        return latencies.stream().mapToDouble(Double::doubleValue).toArray();
    }

    static double percentile(double[] samples, double p) {
        double[] sorted = samples.clone();
        Arrays.sort(sorted);
        return sorted[Math.max(0, (int) Math.ceil(p / 100 * sorted.length) - 1)];
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0 || !(args[0].equals("serve") || args[0].equals("measure"))) {
            System.err.println("usage: SlimServer.java serve --mail-url URL [--mode inline] [--port N] | measure [--signups N]");
            System.exit(2);
        }
        Map<String, String> options = new java.util.HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            options.put(args[i], args[i + 1]);
        }
        try (ConnectionPool pool = ConnectionPool.open(DatabaseUrl.fromEnvironment(), "slim-server", 20)) {
            Migrations.migrate(pool.dataSource());
            if (args[0].equals("serve")) {
                Mode mode = Mode.valueOf(options.getOrDefault("--mode", "deferred").toUpperCase());
                SlimServer server = start(pool, mode, Integer.parseInt(options.getOrDefault("--port", "8081")),
                        URI.create(options.get("--mail-url")));
                System.out.println("slim server (" + mode + ") on http://127.0.0.1:" + server.port() + "/signup");
                Thread.currentThread().join();
            }
            int count = Integer.parseInt(options.getOrDefault("--signups", "200"));
            AtomicInteger mails = new AtomicInteger();
            HttpServer mail = slowMailApi(Duration.ofMillis(200), mails);
            URI mailApi = URI.create("http://127.0.0.1:" + mail.getAddress().getPort() + "/send");
            String run = Long.toString(System.currentTimeMillis(), 36);
            System.out.printf("%-9s %8s %9s %9s %9s%n", "mode", "signups", "p50 ms", "p99 ms", "max ms");
            for (Mode mode : Mode.values()) {
                try (SlimServer server = start(pool, mode, 0, mailApi)) {
                    signups(server.port(), "warmup-" + mode + run, 20, 4);
                    double[] ms = signups(server.port(), mode.name().toLowerCase() + run + "-", count, 4);
                    System.out.printf("%-9s %8d %9.1f %9.1f %9.1f%n", mode.name().toLowerCase(), count,
                            percentile(ms, 50), percentile(ms, 99), percentile(ms, 100));
                }
            }
            mail.stop(0);
        }
    }
}
