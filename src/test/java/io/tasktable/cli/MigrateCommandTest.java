package io.tasktable.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.DatabaseUrl;
import io.tasktable.testing.MigrationFiles;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** {@code tasktable migrate} as a user runs it: a separate JVM, configured by DATABASE_URL. */
@ExtendWith(TestDatabase.Extension.class)
class MigrateCommandTest {

    private final TestDatabase db;

    MigrateCommandTest(TestDatabase db) {
        this.db = db;
    }

    record Run(int exitCode, String stdout, String stderr) {
    }

    static Run tasktable(Map<String, String> env, String... args) throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> command = new java.util.ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"),
                Main.class.getName()));
        command.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().remove(DatabaseUrl.ENV);
        builder.environment().putAll(env);
        Process process = builder.start();
        process.getOutputStream().close();
        var stdout = process.getInputStream().readAllBytes();
        var stderr = process.getErrorStream().readAllBytes();
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).as("process ended").isTrue();
        return new Run(process.exitValue(), new String(stdout, StandardCharsets.UTF_8),
                new String(stderr, StandardCharsets.UTF_8));
    }

    private static Connection connect(DatabaseUrl url) throws SQLException {
        return DriverManager.getConnection(url.jdbcUrl(), url.properties());
    }

    @Test
    void migrate_creates_the_schema_in_an_empty_database_and_is_then_a_no_op() throws Exception {
        DatabaseUrl empty = db.createEmptyDatabase();
        String libpqStyle = "postgresql://" + empty.user() + "@" + empty.host() + ":" + empty.port() + "/" + empty.database();

        Run first = tasktable(Map.of(DatabaseUrl.ENV, libpqStyle), "migrate");
        Run second = tasktable(Map.of(DatabaseUrl.ENV, "jdbc:" + libpqStyle.replace(empty.user() + "@", "")
                + "?user=" + empty.user()), "migrate");

        assertThat(first.exitCode()).as(first.stderr()).isZero();
        assertThat(first.stdout()).contains("applied " + MigrationFiles.count() + " migration(s)");
        assertThat(second.exitCode()).as(second.stderr()).isZero();
        assertThat(second.stdout()).contains("schema is up to date");
        try (Connection c = connect(empty)) {
            assertThat(Sql.count(c, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'tasktable'::regnamespace "
                    + "AND proname = 'claim_tasks'")).isEqualTo(1);
        }
    }

    @Test
    void migrate_refuses_a_database_migrated_by_a_newer_tasktable() throws Exception {
        DatabaseUrl newer = db.createEmptyDatabase();
        assertThat(tasktable(Map.of(DatabaseUrl.ENV, newer.jdbcUrl() + "?user=" + newer.user()), "migrate").exitCode()).isZero();
        try (Connection c = connect(newer)) {
            Sql.update(c, "INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, "
                    + "checksum, installed_by, execution_time, success) VALUES (99, '99', 'from the future', 'SQL', "
                    + "'V99__from_the_future.sql', 0, current_user, 0, true)");
        }

        Run run = tasktable(Map.of(DatabaseUrl.ENV, newer.jdbcUrl() + "?user=" + newer.user()), "migrate");

        assertThat(run.exitCode()).isEqualTo(1);
        assertThat(run.stderr().strip()).isEqualTo("tasktable: the database's tasktable schema is at version 99 "
                + "(from the future), newer than this build knows; upgrade tasktable");
    }

    @Test
    void an_unreachable_database_gives_one_line_and_exit_status_1() throws Exception {
        Run run = tasktable(Map.of(DatabaseUrl.ENV, "postgresql://nobody@127.0.0.1:1/none"), "migrate");

        assertThat(run.exitCode()).isEqualTo(1);
        assertThat(run.stderr().strip()).startsWith("tasktable: ").doesNotContain("\n").contains("refused");
    }

    @Test
    void a_malformed_database_url_gives_one_line_and_exit_status_1() throws Exception {
        Run run = tasktable(Map.of(DatabaseUrl.ENV, "mysql://localhost/db"), "migrate");

        assertThat(run.exitCode()).isEqualTo(1);
        assertThat(run.stderr().strip()).isEqualTo("tasktable: unsupported database URL 'mysql://localhost/db': "
                + "expected postgresql://user@host:port/db or jdbc:postgresql://host:port/db");
    }

    @Test
    void an_unknown_command_gives_usage_help_and_exit_status_2() throws Exception {
        Run run = tasktable(Map.of(), "migrat");

        assertThat(run.exitCode()).isEqualTo(2);
        assertThat(run.stderr()).startsWith("tasktable: Unmatched argument");
    }
}
