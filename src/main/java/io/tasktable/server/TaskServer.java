package io.tasktable.server;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Optional;

import javax.sql.DataSource;

import org.jooq.DSLContext;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.helidon.health.HealthCheckResponse;
import io.helidon.health.HealthCheckType;
import io.helidon.http.HeaderNames;
import io.helidon.http.HttpException;
import io.helidon.http.Method;
import io.helidon.http.Status;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.observe.ObserveFeature;
import io.helidon.webserver.observe.health.HealthObserver;
import io.helidon.webserver.staticcontent.ClasspathHandlerConfig;
import io.helidon.webserver.staticcontent.StaticContentFeature;

import io.tasktable.Migrations;

/**
 * The slim server: JSON API under {@code /api}, the dashboard at {@code /}, {@code /health} and
 * {@code /metrics}. Every endpoint is one function call or one simple query; the rules stay in SQL.
 */
public final class TaskServer implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(TaskServer.class);
    /** A readiness probe must answer quickly even when the database does not. */
    private static final Duration HEALTH_QUERY_TIMEOUT = Duration.ofSeconds(2);

    private final WebServer server;

    private TaskServer(WebServer server) {
        this.server = server;
    }

    /** Starts the server; {@link #port()} tells the port when 0 was asked for. */
    public static TaskServer start(DataSource dataSource, ServerOptions options, TaskMetrics metrics) {
        options.checkExposure();
        DSLContext db = DSL.using(dataSource, SQLDialect.POSTGRES);
        WebServer server = WebServer.builder()
                .host(options.host())
                .port(options.port())
                .routing(routing -> routing(routing, db, options, metrics))
                .addFeature(ObserveFeature.builder()
                        .endpoint("/")
                        .addObserver(health(dataSource, db))
                        .build())
                .build()
                .start();
        LOG.info("tasktable server listening on http://{}:{}/", options.host(), server.port());
        return new TaskServer(server);
    }

    public int port() {
        return server.port();
    }

    @Override
    public void close() {
        server.stop();
    }

    /** The routes, apart from health; tests and the server share them. */
    static void routing(HttpRouting.Builder routing, DSLContext db, ServerOptions options, TaskMetrics metrics) {
        options.apiToken().ifPresent(token -> routing.addFilter((chain, req, res) -> {
            if (mutating(req.prologue().method()) && !authorized(req.headers().first(HeaderNames.AUTHORIZATION), token)) {
                res.header(HeaderNames.WWW_AUTHENTICATE, "Bearer realm=\"tasktable\"");
                Problem.send(res, Status.UNAUTHORIZED_401, "unauthorized",
                        "this endpoint changes state: send Authorization: Bearer <TASKTABLE_API_TOKEN>");
                return;
            }
            chain.proceed();
        }));
        routing.register("/api", new ApiService(db, options.maxBodyBytes(), metrics))
                .get("/api/openapi.yaml", (req, res) -> {
                    res.header(HeaderNames.CONTENT_TYPE, "application/yaml");
                    try (var in = TaskServer.class.getResourceAsStream("/openapi.yaml")) {
                        res.send(in.readAllBytes());
                    }
                })
                .get("/metrics", (req, res) -> {
                    res.header(HeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
                    res.send(metrics.scrape(db));
                })
                .register("/", StaticContentFeature.createService(ClasspathHandlerConfig.builder()
                        .location("web")
                        .welcome("index.html")
                        .build()))
                .error(Problem.class, (req, res, e) -> e.send(res))
                .error(HttpException.class, (req, res, e) -> Problem.send(res, e.status(),
                        e.status().code() == 404 ? "not-found" : "http-error",
                        e.status().code() == 404 ? "no such endpoint: " + req.path().path() : e.getMessage()))
                .error(Exception.class, (req, res, e) -> {
                    LOG.error("{} {} failed", req.prologue().method(), req.path().path(), e);
                    Problem.send(res, Status.INTERNAL_SERVER_ERROR_500, "internal-error",
                            "the server failed to handle this request; its log has the details");
                });
    }

    private static boolean mutating(Method method) {
        return !(method == Method.GET || method == Method.HEAD || method == Method.OPTIONS);
    }

    /** Compares digests, so the time taken says nothing about how much of the token matched. */
    private static boolean authorized(Optional<String> header, String token) {
        String presented = header.filter(h -> h.regionMatches(true, 0, "Bearer ", 0, 7))
                .map(h -> h.substring(7).strip()).orElse("");
        return MessageDigest.isEqual(sha256(presented), sha256(token));
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JVM has SHA-256", e);
        }
    }

    /** /health, /health/live, /health/ready: live while the process serves; ready when the database answers and its schema is current. */
    private static HealthObserver health(DataSource dataSource, DSLContext db) {
        return HealthObserver.builder()
                .details(true)
                .addCheck(() -> HealthCheckResponse.builder().status(true).build(), HealthCheckType.LIVENESS, "server")
                .addCheck(() -> {
                    try {
                        db.selectOne().queryTimeout((int) HEALTH_QUERY_TIMEOUT.toSeconds()).fetch();
                        return HealthCheckResponse.builder().status(true).build();
                    } catch (RuntimeException e) {
                        return HealthCheckResponse.builder().status(false).detail("error", e.getMessage()).build();
                    }
                }, HealthCheckType.READINESS, "database")
                .addCheck(() -> {
                    try {
                        String state = Migrations.state(dataSource);
                        return HealthCheckResponse.builder().status(state.equals("current")).detail("schema", state).build();
                    } catch (RuntimeException e) {
                        return HealthCheckResponse.builder().status(false).detail("error", e.getMessage()).build();
                    }
                }, HealthCheckType.READINESS, "migrations")
                .build();
    }
}
