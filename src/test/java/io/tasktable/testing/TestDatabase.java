package io.tasktable.testing;

import static org.awaitility.Awaitility.await;

import java.net.InetSocketAddress;
import java.net.Socket;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

import javax.sql.DataSource;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.postgresql.PGConnection;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.postgresql.PostgreSQLContainer;

import io.tasktable.DatabaseUrl;
import io.tasktable.Migrations;

/**
 * The throwaway database of one test run: created and migrated on first use, dropped when the run ends.
 *
 * <p>The server comes from, in order: {@value #ENV} (a role allowed to CREATE DATABASE); the local server
 * on 127.0.0.1:5432; Testcontainers when Docker is available. Without any, tests fail (never skip) with a
 * message that says how to provide one. Tests get it by declaring a {@code TestDatabase} parameter in a
 * class annotated {@code @ExtendWith(TestDatabase.Extension.class)}.
 */
public final class TestDatabase implements AutoCloseable {

    public static final String ENV = "TASKTABLE_TEST_DATABASE_URL";
    private static final String LOCAL_HOST = "127.0.0.1";
    private static final int LOCAL_PORT = 5432;

    private final DatabaseUrl admin;
    private final DatabaseUrl url;
    private final AutoCloseable container;

    private final List<String> databases = new ArrayList<>();

    private TestDatabase(DatabaseUrl admin, AutoCloseable container) throws SQLException {
        this.admin = admin;
        this.container = container;
        this.url = createEmptyDatabase();
        try {
            Migrations.migrate(dataSource());
        } catch (RuntimeException e) {
            // Nothing keeps this instance to drop its database at the end of the run, and every test class asks for
            // one again: a failing migration left a database behind per test class (300 in one run), so drop it now.
            try {
                close();
            } catch (Exception cleanup) {
                e.addSuppressed(cleanup);
            }
            throw e;
        }
    }

    /** Another empty database on the same server (no schema), dropped with this one at the end of the run. */
    public synchronized DatabaseUrl createEmptyDatabase() throws SQLException {
        String name = "tasktable_test_" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd_HHmmss"))
                + "_" + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt()).substring(0, 6);
        try (Connection c = DriverManager.getConnection(admin.jdbcUrl(), admin.properties());
             Statement s = c.createStatement()) {
            s.execute("CREATE DATABASE " + name);
        }
        databases.add(name);
        return admin.withDatabase(name);
    }

    static TestDatabase create() throws SQLException {
        List<String> tried = new ArrayList<>();
        String explicit = System.getenv(ENV);
        if (explicit != null && !explicit.isBlank()) {
            return new TestDatabase(DatabaseUrl.parse(explicit), null);
        }
        tried.add(ENV + " is not set");
        if (reachable(LOCAL_HOST, LOCAL_PORT)) {
            String user = System.getenv().getOrDefault("PGUSER", System.getProperty("user.name"));
            DatabaseUrl local = DatabaseUrl.parse("postgresql://" + user + "@" + LOCAL_HOST + ":" + LOCAL_PORT + "/postgres");
            return new TestDatabase(local, null);
        }
        tried.add("nothing listens on " + LOCAL_HOST + ":" + LOCAL_PORT);
        if (dockerAvailable()) {
            PostgreSQLContainer container = new PostgreSQLContainer("postgres:17-alpine");
            container.start();
            DatabaseUrl url = DatabaseUrl.parse(container.getJdbcUrl())
                    .withDatabase("postgres");
            url = new DatabaseUrl(url.host(), url.port(), url.database(), container.getUsername(),
                    container.getPassword(), url.params());
            return new TestDatabase(url, container::stop);
        }
        tried.add("Docker is not available for Testcontainers");
        throw new IllegalStateException("No PostgreSQL server for the tests (" + String.join("; ", tried) + "). "
                + "Provide one: set " + ENV + "=postgresql://USER:PASSWORD@HOST:PORT/postgres (USER may CREATE DATABASE), "
                + "or run PostgreSQL on " + LOCAL_HOST + ":" + LOCAL_PORT + " (trust auth for the current user, or PGUSER), "
                + "or start Docker.");
    }

    private static boolean reachable(String host, int port) {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), 1000);
            return true;
        } catch (java.io.IOException e) {
            return false;
        }
    }

    private static boolean dockerAvailable() {
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    /** The throwaway database. */
    public DatabaseUrl url() {
        return url;
    }

    /** A non-pooling data source: each getConnection() is a new server connection. */
    public DataSource dataSource() {
        return url.dataSource("tasktable-test");
    }

    public Connection connect() throws SQLException {
        return dataSource().getConnection();
    }

    /** Back to a freshly migrated state: no tasks, only the default queue with default policy. */
    /** Waits until the connection's backend is blocked on a lock (a row, a key, an advisory lock). */
    public void awaitLockWait(Connection waiter) throws SQLException {
        int pid = waiter.unwrap(PGConnection.class).getBackendPID();
        try (Connection probe = connect()) {
            await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(10)).until(() ->
                    Sql.count(probe, "SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock'", pid) > 0);
        }
    }

    public void reset() throws SQLException {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("TRUNCATE tasktable.live_task, tasktable.finished_task RESTART IDENTITY");
            s.execute("DELETE FROM tasktable.queue");
            s.execute("INSERT INTO tasktable.queue (name) VALUES ('default')");
        }
    }

    @Override
    public void close() throws Exception {
        try (Connection c = DriverManager.getConnection(admin.jdbcUrl(), admin.properties());
             Statement s = c.createStatement()) {
            for (String name : databases) {
                s.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
            }
        } finally {
            if (container != null) {
                container.close();
            }
        }
    }

    /** Resolves {@link TestDatabase} parameters; one database per test run, dropped at its end. */
    public static final class Extension implements ParameterResolver {

        @Override
        public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
            return parameter.getParameter().getType() == TestDatabase.class;
        }

        @Override
        public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
            return context.getRoot().getStore(ExtensionContext.Namespace.create(TestDatabase.class))
                    .computeIfAbsent(TestDatabase.class, key -> {
                        try {
                            return create();
                        } catch (SQLException e) {
                            throw new IllegalStateException("cannot create the test database: " + e.getMessage(), e);
                        }
                    }, TestDatabase.class);
        }
    }
}
