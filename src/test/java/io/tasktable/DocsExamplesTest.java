package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import javax.sql.DataSource;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * The SQL in the docs runs: every fenced block whose info string is exactly {@code sql} in
 * {@code docs/sql-api.md} and {@code docs/dba-guide.md} is executed, statement by statement, in the order of the
 * page, and any error fails the test with the block's text, its line and the error.
 *
 * <p>Other fences are skipped by design: {@code sql-pg-cron} (needs the pg_cron extension), {@code sql-template}
 * (driver placeholders such as {@code $1}) and {@code text} (output, and calls that are supposed to raise an
 * error: those never go in {@code sql} blocks).
 *
 * <p>Each page runs on its own freshly migrated database rather than on the shared one after {@code db.reset()}:
 * the examples build on each other (queues, then tasks, then their ids read back with subqueries), and the DBA
 * guide changes what {@code reset()} does not undo (ALTER TABLE storage options, REVOKE/GRANT, a procedure, a
 * table in {@code public}), which must not leak into other tests. The databases are dropped with the test run.
 * Roles are cluster-wide, so the roles the docs create ({@code CREATE ROLE name}) must not exist before (the
 * test refuses to alter a role it did not create) and are dropped afterwards.
 */
@ExtendWith(TestDatabase.Extension.class)
class DocsExamplesTest {

    private static final Pattern FENCE = Pattern.compile("^```(\\S*)\\s*$");
    private static final Pattern CREATE_ROLE = Pattern.compile("(?i)\\bCREATE\\s+ROLE\\s+(\\w+)");

    private final TestDatabase db;

    DocsExamplesTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void every_sql_block_of_the_sql_api_page_runs_in_order_on_a_fresh_database() throws Exception {
        List<Block> blocks = sqlBlocks(Path.of("docs", "sql-api.md"));

        assertThat(blocks).as("sql blocks in docs/sql-api.md").hasSizeGreaterThan(20);
        runInOrder(freshDatabase(), blocks);
    }

    @Test
    void every_sql_block_of_the_dba_guide_runs_in_order_on_a_fresh_database() throws Exception {
        List<Block> blocks = sqlBlocks(Path.of("docs", "dba-guide.md"));

        assertThat(blocks).as("sql blocks in docs/dba-guide.md").hasSizeGreaterThan(10);
        runInOrder(freshDatabase(), blocks);
    }

    @Test
    void a_broken_example_fails_with_its_block_and_the_error() throws Exception {
        String page = """
                # A page

                ```sql
                SELECT tasktable.enqueue_task('ok');
                ```

                ```text
                this is not SQL and is skipped
                ```

                ```sql
                SELECT tasktable.enqueue_tsak('typo');
                ```
                """;
        List<Block> blocks = sqlBlocks("page.md", page);

        assertThat(blocks).hasSize(2);
        DataSource fresh = freshDatabase();
        assertThatThrownBy(() -> runInOrder(fresh, blocks))
                .isInstanceOf(AssertionError.class)
                .hasMessageContaining("page.md, block at line 11")
                .hasMessageContaining("SELECT tasktable.enqueue_tsak('typo')")
                .hasMessageContaining("42883");
    }

    @Test
    void statements_split_on_semicolons_outside_quotes_comments_and_dollar_bodies() {
        String sql = """
                SELECT 'a;b', "c;d" FROM t; -- x; y
                /* z; */ DO $$ BEGIN PERFORM 1; END $$;
                SELECT E'it\\'s;' ;
                SELECT $fn$ ; $fn$
                """;

        assertThat(statements(sql)).containsExactly(
                "SELECT 'a;b', \"c;d\" FROM t",
                "-- x; y\n/* z; */ DO $$ BEGIN PERFORM 1; END $$",
                "SELECT E'it\\'s;'",
                "SELECT $fn$ ; $fn$");
    }

    /** One fenced block: where it starts (1-based line of the fence) and its text. */
    record Block(String file, int line, String text) {
    }

    private static List<Block> sqlBlocks(Path file) throws IOException {
        return sqlBlocks(file.toString(), Files.readString(file));
    }

    /** The blocks fenced as exactly {@code ```sql}; an unclosed fence fails. */
    static List<Block> sqlBlocks(String file, String markdown) {
        List<Block> blocks = new ArrayList<>();
        String[] lines = markdown.split("\n", -1);
        String info = null;
        int start = 0;
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < lines.length; i++) {
            Matcher fence = FENCE.matcher(lines[i]);
            if (info == null && fence.matches()) {
                info = fence.group(1);
                start = i + 1;
                text.setLength(0);
            } else if (info != null && lines[i].strip().equals("```")) {
                if (info.equals("sql")) {
                    blocks.add(new Block(file, start, text.toString()));
                }
                info = null;
            } else if (info != null) {
                text.append(lines[i]).append('\n');
            }
        }
        if (info != null) {
            throw new AssertionError(file + ": the fence opened at line " + start + " is never closed");
        }
        return blocks;
    }

    private DataSource freshDatabase() throws SQLException {
        DatabaseUrl url = db.createEmptyDatabase();
        DataSource dataSource = url.dataSource("tasktable-docs-test");
        Migrations.migrate(dataSource);
        return dataSource;
    }

    /** Runs the blocks on one autocommit connection, so BEGIN/COMMIT and SET ROLE in a block work as in psql. */
    private static void runInOrder(DataSource database, List<Block> blocks) throws SQLException {
        Set<String> roles = new LinkedHashSet<>();
        blocks.forEach(b -> CREATE_ROLE.matcher(b.text()).results().forEach(m -> roles.add(m.group(1).toLowerCase())));
        try (Connection c = database.getConnection()) {
            for (String role : roles) {
                assertThat(Sql.count(c, "SELECT count(*) FROM pg_roles WHERE rolname = ?", role))
                        .as("role %s already exists on the test server (left by an interrupted run?); the docs "
                                + "examples would change it: drop it first", role)
                        .isZero();
            }
            try {
                for (Block block : blocks) {
                    for (String statement : statements(block.text())) {
                        try (Statement s = c.createStatement()) {
                            s.execute(statement);
                        } catch (SQLException e) {
                            throw new AssertionError(block.file() + ", block at line " + block.line() + " failed:\n"
                                    + block.text() + "\nstatement:\n" + statement + "\nerror: " + e.getSQLState()
                                    + " " + e.getMessage(), e);
                        }
                    }
                }
            } finally {
                dropRoles(c, roles);
            }
        }
    }

    private static void dropRoles(Connection c, Set<String> roles) throws SQLException {
        if (!c.getAutoCommit()) {
            c.rollback();
            c.setAutoCommit(true);
        }
        try (Statement s = c.createStatement()) {
            s.execute("ROLLBACK");  // a failed block may have left a transaction open
            s.execute("RESET ROLE");
            for (String role : roles) {
                if (Sql.count(c, "SELECT count(*) FROM pg_roles WHERE rolname = ?", role) > 0) {
                    s.execute("DROP OWNED BY " + role);
                    s.execute("DROP ROLE " + role);
                }
            }
        }
    }

    /**
     * Splits a block into statements at semicolons outside string literals ({@code '...'}, {@code E'...'}),
     * quoted identifiers, comments and dollar-quoted bodies; enough for documentation SQL.
     */
    static List<String> statements(String sql) {
        List<String> statements = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        int i = 0;
        while (i < sql.length()) {
            char ch = sql.charAt(i);
            int end;
            if (ch == '\'') {
                boolean escapes = i > 0 && (sql.charAt(i - 1) == 'E' || sql.charAt(i - 1) == 'e');
                end = i + 1;
                while (end < sql.length()) {
                    char at = sql.charAt(end);
                    if (escapes && at == '\\') {
                        end += 2;
                    } else if (at == '\'' && end + 1 < sql.length() && sql.charAt(end + 1) == '\'') {
                        end += 2;
                    } else if (at == '\'') {
                        break;
                    } else {
                        end++;
                    }
                }
                end = Math.min(end + 1, sql.length());
            } else if (ch == '"') {
                end = sql.indexOf('"', i + 1);
                end = end < 0 ? sql.length() : end + 1;
            } else if (sql.startsWith("--", i)) {
                end = sql.indexOf('\n', i);
                end = end < 0 ? sql.length() : end;
            } else if (sql.startsWith("/*", i)) {
                end = sql.indexOf("*/", i + 2);
                end = end < 0 ? sql.length() : end + 2;
            } else if (ch == '$' && dollarTag(sql, i) != null) {
                String tag = dollarTag(sql, i);
                end = sql.indexOf(tag, i + tag.length());
                end = end < 0 ? sql.length() : end + tag.length();
            } else if (ch == ';') {
                add(statements, current);
                current.setLength(0);
                i++;
                continue;
            } else {
                end = i + 1;
            }
            current.append(sql, i, end);
            i = end;
        }
        add(statements, current);
        return statements;
    }

    /** The dollar-quote tag starting at i ({@code $$} or {@code $name$}), or null if it is not one ($1 is not). */
    private static String dollarTag(String sql, int i) {
        int j = i + 1;
        while (j < sql.length() && (Character.isLetter(sql.charAt(j)) || sql.charAt(j) == '_'
                || (j > i + 1 && Character.isDigit(sql.charAt(j))))) {
            j++;
        }
        return j < sql.length() && sql.charAt(j) == '$' ? sql.substring(i, j + 1) : null;
    }

    /** Adds a statement unless it is only whitespace and comments. */
    private static void add(List<String> statements, StringBuilder current) {
        String statement = current.toString().strip();
        String code = statement.replaceAll("(?m)--.*$", "").replaceAll("(?s)/\\*.*?\\*/", "").strip();
        if (!code.isEmpty()) {
            statements.add(statement);
        }
    }
}
