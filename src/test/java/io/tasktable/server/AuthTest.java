package io.tasktable.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse.BodyHandlers;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.Optional;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** With TASKTABLE_API_TOKEN set, only mutating endpoints need it; reads and the dashboard stay open. */
@ExtendWith(TestDatabase.Extension.class)
class AuthTest {

    private static final String TOKEN = "s3cret-token";

    private final TestDatabase db;
    private final HttpClient http = HttpClient.newHttpClient();
    private TaskServer server;

    AuthTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void startServer() throws SQLException {
        db.reset();
        server = TaskServer.start(db.dataSource(), ServerOptions.defaults().withPort(0).withToken(TOKEN), new TaskMetrics());
    }

    @AfterEach
    void stopServer() {
        server.close();
        http.close();
    }

    private int post(String path, Optional<String> authorization) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path))
                .header("Content-Type", "application/json").POST(BodyPublishers.ofString("{\"kind\": \"a\"}"));
        authorization.ifPresent(a -> request.header("Authorization", a));
        return http.send(request.build(), BodyHandlers.ofString()).statusCode();
    }

    private int get(String path) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path)).build(),
                BodyHandlers.ofString()).statusCode();
    }

    @Test
    void mutating_requests_need_the_bearer_token() throws Exception {
        assertThat(post("/api/tasks", Optional.empty())).isEqualTo(401);
        assertThat(post("/api/tasks", Optional.of("Bearer wrong"))).isEqualTo(401);
        assertThat(post("/api/tasks", Optional.of("Basic " + TOKEN))).isEqualTo(401);
        assertThat(post("/api/tasks", Optional.of("Bearer " + TOKEN.substring(1)))).isEqualTo(401);
        try (Connection c = db.connect()) {
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task")).as("refused requests wrote nothing").isZero();
        }

        assertThat(post("/api/tasks", Optional.of("Bearer " + TOKEN))).isEqualTo(201);
        assertThat(post("/api/tasks", Optional.of("bearer " + TOKEN))).isEqualTo(201);
    }

    @Test
    void reads_health_and_the_dashboard_need_no_token() throws Exception {
        assertThat(get("/api/tasks")).isEqualTo(200);
        assertThat(get("/api/queues")).isEqualTo(200);
        assertThat(get("/")).isEqualTo(200);
        assertThat(get("/health")).isEqualTo(200);
        assertThat(get("/metrics")).isEqualTo(200);
    }

    @Test
    void without_a_token_the_server_refuses_a_non_loopback_address_unless_allowed() throws Exception {
        ServerOptions open = new ServerOptions("0.0.0.0", 0, Optional.empty(), 1024, false);
        assertThatThrownBy(() -> TaskServer.start(db.dataSource(), open, new TaskMetrics()))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("TASKTABLE_API_TOKEN");

        try (TaskServer allowed = TaskServer.start(db.dataSource(),
                new ServerOptions("0.0.0.0", 0, Optional.empty(), 1024, true), new TaskMetrics())) {
            assertThat(allowed.port()).isPositive();
        }
        try (TaskServer withToken = TaskServer.start(db.dataSource(),
                new ServerOptions("0.0.0.0", 0, Optional.of(TOKEN), 1024, false), new TaskMetrics())) {
            assertThat(withToken.port()).isPositive();
        }
    }
}
