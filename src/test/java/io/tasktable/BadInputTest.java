package io.tasktable;

import static io.tasktable.testing.SqlStates.assertSqlState;
import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * Every bad input to the SQL API raises its own SQLSTATE (class TT, see V1) and changes nothing.
 * Plain SQL on purpose: this is what any client, in any language, sees.
 */
@ExtendWith(TestDatabase.Extension.class)
class BadInputTest {

    /** Task 1 is queued, task 2 is running under attempt 1. */
    private static final long QUEUED = 1;
    private static final long RUNNING = 2;

    private final TestDatabase db;
    private Connection c;

    BadInputTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void oneQueuedAndOneRunningTask() throws SQLException {
        db.reset();
        c = db.connect();
        try (Statement s = c.createStatement()) {
            s.execute("SELECT tasktable.enqueue_task('queued', '{}')");
            s.execute("SELECT tasktable.enqueue_task('running', '{}', priority => 10)");
            s.execute("SELECT tasktable.claim_tasks(1, 'w')");
        }
        assertThat(Sql.state(c, QUEUED)).isEqualTo("queued");
        assertThat(Sql.state(c, RUNNING)).isEqualTo("running");
    }

    @AfterEach
    void close() throws SQLException {
        c.close();
    }

    static Stream<Arguments> badCalls() {
        return Stream.of(
                // enqueue_task / enqueue_tasks
                bad("TT001", "SELECT tasktable.enqueue_task(NULL)"),
                bad("TT001", "SELECT tasktable.enqueue_task('')"),
                bad("TT001", "SELECT tasktable.enqueue_task(repeat('k', 256))"),
                bad("TT002", "SELECT tasktable.enqueue_task('k', '42')"),
                bad("TT002", "SELECT tasktable.enqueue_task('k', '\"text\"')"),
                bad("TT002", "SELECT tasktable.enqueue_task('k', 'null'::jsonb)"),
                bad("TT003", "SELECT tasktable.enqueue_task('k', jsonb_build_object('blob', repeat('x', 1100000)))"),
                bad("TT004", "SELECT tasktable.enqueue_task('k', '{}', 'no_such_queue')"),
                bad("TT012", "SELECT tasktable.enqueue_task('k', priority => 1001)"),
                bad("TT012", "SELECT tasktable.enqueue_task('k', priority => -1001)"),
                bad("TT012", "SELECT tasktable.enqueue_task('k', max_attempts => 0)"),
                bad("TT012", "SELECT tasktable.enqueue_task('k', max_attempts => -3)"),
                bad("TT012", "SELECT tasktable.enqueue_task('k', dedup_key => '')"),
                bad("TT001", "SELECT tasktable.enqueue_tasks(ARRAY[ROW('ok', '{}', NULL, NULL, NULL, NULL, NULL), "
                        + "ROW(NULL, '{}', NULL, NULL, NULL, NULL, NULL)]::tasktable.task_spec[])"),
                bad("TT004", "SELECT tasktable.enqueue_tasks_json('[{\"kind\": \"ok\"}, {\"kind\": \"ok\", \"queue\": \"nope\"}]')"),
                bad("TT008", "SELECT tasktable.enqueue_tasks(ARRAY[[ROW('a', '{}', NULL, NULL, NULL, NULL, NULL)::tasktable.task_spec]])"),
                bad("TT008", "SELECT tasktable.enqueue_tasks_json('{\"kind\": \"not an array\"}')"),
                bad("TT012", "SELECT tasktable.enqueue_tasks_json('[{\"kind\": \"a\", \"queu\": \"mail\"}]')"),
                bad("TT012", "SELECT tasktable.enqueue_tasks_json('[{\"kind\": \"a\", \"priority\": \"high\"}]')"),
                bad("TT012", "SELECT tasktable.enqueue_tasks_json('[{\"kind\": \"a\", \"priority\": 1e10}]')"),
                bad("TT012", "SELECT tasktable.enqueue_tasks_json('[{\"kind\": \"a\", \"run_at\": \"soon\"}]')"),
                bad("TT012", "SELECT tasktable.enqueue_tasks_json('[42]')"),
                bad("TT001", "SELECT tasktable.enqueue_tasks_json('[{\"payload\": {}}]')"),
                // claim_tasks
                bad("TT005", "SELECT * FROM tasktable.claim_tasks(0, 'w')"),
                bad("TT005", "SELECT * FROM tasktable.claim_tasks(-1, 'w')"),
                bad("TT005", "SELECT * FROM tasktable.claim_tasks(NULL, 'w')"),
                bad("TT005", "SELECT * FROM tasktable.claim_tasks(1000000, 'w')"),
                bad("TT006", "SELECT * FROM tasktable.claim_tasks(1, NULL)"),
                bad("TT006", "SELECT * FROM tasktable.claim_tasks(1, '')"),
                bad("TT004", "SELECT * FROM tasktable.claim_tasks(1, 'w', ARRAY['no_such_queue'])"),
                bad("TT004", "SELECT * FROM tasktable.claim_tasks(1, 'w', ARRAY[]::text[])"),
                bad("TT004", "SELECT * FROM tasktable.claim_tasks(1, 'w', ARRAY[NULL]::text[])"),
                bad("TT007", "SELECT * FROM tasktable.claim_tasks(1, 'w', lease => interval '-1 second')"),
                bad("TT007", "SELECT * FROM tasktable.claim_tasks(1, 'w', lease => interval '0')"),
                bad("TT007", "SELECT * FROM tasktable.claim_tasks(1, 'w', lease => interval '2 days')"),
                // complete / fail / extend / snooze: task references and attempts
                bad("TT009", "SELECT tasktable.complete_task(2, 0)"),
                bad("TT009", "SELECT tasktable.complete_task(2, NULL)"),
                bad("TT009", "SELECT tasktable.complete_tasks(ARRAY[2, 1], ARRAY[1, NULL])"),
                bad("TT009", "SELECT * FROM tasktable.fail_tasks(ARRAY[2, 1], ARRAY[1, 0], ARRAY['a', 'b'])"),
                bad("TT008", "SELECT tasktable.complete_task(NULL, 1)"),
                bad("TT008", "SELECT tasktable.complete_tasks(ARRAY[2, 1], ARRAY[1])"),
                bad("TT008", "SELECT tasktable.complete_tasks(NULL, NULL)"),
                bad("TT008", "SELECT tasktable.complete_tasks(ARRAY[2], ARRAY[1], ARRAY['{}', '{}']::jsonb[])"),
                bad("TT009", "SELECT tasktable.fail_task(2, -1, 'boom')"),
                bad("TT008", "SELECT * FROM tasktable.fail_tasks(ARRAY[2], ARRAY[1], ARRAY['a', 'b'])"),
                bad("TT008", "SELECT * FROM tasktable.fail_tasks(ARRAY[2], ARRAY[1], NULL)"),
                bad("TT007", "SELECT tasktable.extend_lease(ARRAY[2], ARRAY[1], interval '-5 seconds')"),
                bad("TT008", "SELECT tasktable.extend_lease(ARRAY[2], ARRAY[1, 1])"),
                bad("TT007", "SELECT tasktable.snooze_task(2, 1, interval '-1 minute')"),
                bad("TT007", "SELECT tasktable.snooze_task(2, 1, NULL)"),
                bad("TT007", "SELECT tasktable.snooze_task(2, 1, interval '1000000 years')"),
                bad("TT008", "SELECT tasktable.complete_tasks('{{2}}', '{{1}}')"),
                bad("TT003", "SELECT tasktable.complete_task(2, 1, jsonb_build_object('blob', repeat('x', 1100000)))"),
                bad("TT009", "SELECT tasktable.snooze_task(2, 0, interval '1 minute')"),
                // admin
                bad("TT010", "SELECT tasktable.cancel_task(NULL)"),
                bad("TT010", "SELECT tasktable.cancel_task(999999)"),
                bad("TT010", "SELECT tasktable.retry_task(999999)"),
                bad("TT011", "SELECT tasktable.retry_task(1)"),
                bad("TT011", "SELECT tasktable.retry_task(2)"),
                bad("TT005", "SELECT tasktable.rescue_expired_tasks(0)"),
                bad("TT005", "SELECT tasktable.prune_tasks(-1)"));
    }

    private static Arguments bad(String sqlState, String sql) {
        return Arguments.of(sqlState, sql);
    }

    @ParameterizedTest(name = "{0} <- {1}")
    @MethodSource("badCalls")
    void bad_input_raises_its_sqlstate_with_a_hint_and_changes_nothing(String sqlState, String sql) throws SQLException {
        List<?> before = snapshot();

        assertSqlState(sqlState, () -> {
            try (Statement s = c.createStatement()) {
                s.execute(sql);
            }
        });

        assertThat(snapshot()).isEqualTo(before);
    }

    @ParameterizedTest(name = "{0} <- {1}")
    @MethodSource("badCalls")
    void every_tasktable_error_carries_a_message_and_a_hint(String sqlState, String sql) {
        var error = serverError(sql);
        assertThat(error.getMessage()).startsWith("tasktable: ");
        assertThat(error.getHint()).isNotBlank();
    }

    /** One bad field each, as the seven arguments of enqueue_task (kind, payload, queue, run_at, priority, max_attempts, dedup_key). */
    static Stream<Arguments> badSpecs() {
        return Stream.of(
                bad("TT001", "NULL, NULL, NULL, NULL, NULL, NULL, NULL"),
                bad("TT001", "repeat('k', 256), NULL, NULL, NULL, NULL, NULL, NULL"),
                bad("TT002", "'k', '\"text\"'::jsonb, NULL, NULL, NULL, NULL, NULL"),
                bad("TT003", "'k', jsonb_build_object('blob', repeat('x', 1100000)), NULL, NULL, NULL, NULL, NULL"),
                bad("TT004", "'k', NULL, 'no_such_queue', NULL, NULL, NULL, NULL"),
                bad("TT012", "'k', NULL, NULL, NULL, 1001, NULL, NULL"),
                bad("TT012", "'k', NULL, NULL, NULL, NULL, 0, NULL"),
                bad("TT012", "'k', NULL, NULL, NULL, NULL, NULL, ''"),
                // two problems: the first in enqueue's order wins in both
                bad("TT001", "'', '42'::jsonb, 'no_such_queue', NULL, 5000, NULL, NULL"),
                bad("TT012", "'k', NULL, 'no_such_queue', NULL, NULL, 0, NULL"));
    }

    /**
     * enqueue_task inserts with statements of its own (V11), enqueue_tasks with the batch's: the same spec is
     * refused by both with the same SQLSTATE, message and hint; only the batch names the spec's position.
     */
    @ParameterizedTest(name = "{0} <- {1}")
    @MethodSource("badSpecs")
    void enqueue_task_and_enqueue_tasks_refuse_a_spec_alike(String sqlState, String args) throws SQLException {
        List<?> before = snapshot();
        var single = serverError("SELECT tasktable.enqueue_task(" + args + ")");
        var batch = serverError("SELECT tasktable.enqueue_tasks(ARRAY[ROW('ok', NULL, NULL, NULL, NULL, NULL, NULL), ROW("
                + args + ")]::tasktable.task_spec[])");

        assertThat(single.getSQLState()).isEqualTo(sqlState);
        assertThat(batch.getSQLState()).isEqualTo(sqlState);
        assertThat(single.getMessage()).startsWith("tasktable: ").isEqualTo(batch.getMessage());
        assertThat(single.getHint()).isNotBlank().isEqualTo(batch.getHint());
        assertThat(single.getDetail()).isNull();
        assertThat(batch.getDetail()).isEqualTo("task 2 of the batch");
        assertThat(snapshot()).isEqualTo(before);
    }

    private org.postgresql.util.ServerErrorMessage serverError(String sql) {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        } catch (org.postgresql.util.PSQLException e) {
            assertThat(e.getServerErrorMessage()).as("error of %s", sql).isNotNull();
            return e.getServerErrorMessage();
        } catch (SQLException e) {
            throw new AssertionError(e);
        }
        throw new AssertionError("no error from " + sql);
    }

    private List<?> snapshot() throws SQLException {
        return List.of(
                Sql.rows(c, "SELECT * FROM tasktable.task ORDER BY id"),
                Sql.rows(c, "SELECT * FROM tasktable.queue ORDER BY name"),
                Sql.value(c, "SELECT last_value FROM tasktable.task_id_seq"));
    }
}
