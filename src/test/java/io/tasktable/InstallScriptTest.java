package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import javax.sql.DataSource;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** db/install.sql, applied with psql, gives exactly the schema Flyway gives, and can be re-run safely. */
@ExtendWith(TestDatabase.Extension.class)
class InstallScriptTest {

    private static final Path MIGRATIONS = Path.of("db", "migration");
    private static final Path SCRIPT = Path.of("db", "install.sql");

    private final TestDatabase db;

    InstallScriptTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void the_committed_script_is_what_the_migrations_generate() throws Exception {
        List<InstallScript.Migration> migrations = new ArrayList<>();
        try (Stream<Path> files = Files.list(MIGRATIONS)) {
            for (Path f : files.filter(f -> f.getFileName().toString().matches("V.*__.*\\.sql")).toList()) {
                migrations.add(InstallScript.migration(f.getFileName().toString(), Files.readString(f)));
            }
        }

        assertThat(Files.readString(SCRIPT)).isEqualTo(InstallScript.render(migrations));
    }

    @Test
    void psql_install_and_flyway_migrate_give_the_same_schema() throws Exception {
        DatabaseUrl byScript = db.createEmptyDatabase();
        DatabaseUrl byFlyway = db.createEmptyDatabase();

        psql(byScript, SCRIPT);
        Migrations.migrate(dataSource(byFlyway));

        assertThat(catalog(byScript)).isEqualTo(catalog(byFlyway));
    }

    @Test
    void the_script_and_flyway_take_turns_without_applying_anything_twice() throws Exception {
        DatabaseUrl byScript = db.createEmptyDatabase();
        DatabaseUrl byFlyway = db.createEmptyDatabase();
        psql(byScript, SCRIPT);
        Migrations.migrate(dataSource(byFlyway));

        assertThat(Migrations.migrate(dataSource(byScript))).as("flyway after the script").isZero();
        assertThat(Migrations.state(dataSource(byScript))).isEqualTo("current");
        psql(byFlyway, SCRIPT);
        assertThat(catalog(byFlyway)).as("the script after flyway").isEqualTo(catalog(byScript));
    }

    @Test
    void rerunning_the_script_keeps_the_data_and_changes_nothing() throws Exception {
        DatabaseUrl url = db.createEmptyDatabase();
        psql(url, SCRIPT);
        try (Connection c = connect(url)) {
            Sql.update(c, "INSERT INTO tasktable.queue (name, max_attempts) VALUES ('mail', 3)");
            Sql.value(c, "SELECT tasktable.enqueue_task('send', queue => 'mail')");
        }
        Map<String, List<Map<String, Object>>> before = catalog(url);

        psql(url, SCRIPT);

        assertThat(catalog(url)).isEqualTo(before);
        try (Connection c = connect(url)) {
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE queue = 'mail'")).isEqualTo(1);
            assertThat(Sql.value(c, "SELECT max_attempts FROM tasktable.queue WHERE name = 'mail'")).isEqualTo(3);
        }
    }

    private static void psql(DatabaseUrl url, Path script) throws Exception {
        ProcessBuilder builder = new ProcessBuilder("psql", "-X", "-q", "-h", url.host(), "-p", String.valueOf(url.port()),
                "-U", url.user(), "-d", url.database(), "-v", "ON_ERROR_STOP=1", "-f", script.toString());
        if (!url.password().isEmpty()) {
            builder.environment().put("PGPASSWORD", url.password());
        }
        builder.redirectErrorStream(true);
        Process process = builder.start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).as("psql -f %s:%n%s", script, output).isZero();
    }

    private static DataSource dataSource(DatabaseUrl url) {
        return url.dataSource("tasktable-install-test");
    }

    private static Connection connect(DatabaseUrl url) throws SQLException {
        return DriverManager.getConnection(url.jdbcUrl(), url.properties());
    }

    /** Everything a schema is made of, in a comparable form: columns, constraints, indexes, functions, views, types, comments, history. */
    private static Map<String, List<Map<String, Object>>> catalog(DatabaseUrl url) throws SQLException {
        Map<String, String> queries = new LinkedHashMap<>();
        queries.put("columns", "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default, "
                + "is_identity FROM information_schema.columns WHERE table_schema = 'tasktable' ORDER BY 1, 3");
        queries.put("constraints", "SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def "
                + "FROM pg_constraint WHERE connamespace = 'tasktable'::regnamespace ORDER BY 1, 2");
        queries.put("indexes", "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'tasktable' ORDER BY 1");
        queries.put("functions", "SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS def, "
                + "obj_description(p.oid, 'pg_proc') AS comment FROM pg_proc p "
                + "WHERE p.pronamespace = 'tasktable'::regnamespace ORDER BY 1");
        queries.put("views", "SELECT viewname, definition FROM pg_views WHERE schemaname = 'tasktable' ORDER BY 1");
        queries.put("types", "SELECT t.typname, t.typtype, (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) "
                + "FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels, obj_description(t.oid, 'pg_type') AS comment "
                + "FROM pg_type t WHERE t.typnamespace = 'tasktable'::regnamespace AND t.typtype IN ('e', 'c') ORDER BY 1");
        queries.put("relations", "SELECT c.relname, c.relkind, c.reloptions::text AS options, obj_description(c.oid, 'pg_class') AS comment "
                + "FROM pg_class c WHERE c.relnamespace = 'tasktable'::regnamespace ORDER BY 1");
        queries.put("column comments", "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) AS comment "
                + "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                + "WHERE c.relnamespace = 'tasktable'::regnamespace AND col_description(c.oid, a.attnum) IS NOT NULL ORDER BY 1, 2");
        queries.put("history", "SELECT version, description, type, script, checksum, success "
                + "FROM tasktable.flyway_schema_history WHERE version IS NOT NULL ORDER BY installed_rank");
        queries.put("queues", "SELECT name, paused, max_attempts, lease FROM tasktable.queue ORDER BY name");
        Map<String, List<Map<String, Object>>> catalog = new LinkedHashMap<>();
        try (Connection c = connect(url)) {
            for (Map.Entry<String, String> q : queries.entrySet()) {
                catalog.put(q.getKey(), Sql.rows(c, q.getValue()));
            }
        }
        return catalog;
    }
}
