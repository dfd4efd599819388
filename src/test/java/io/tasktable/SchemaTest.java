package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.tuple;

import java.sql.Array;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;

import javax.sql.DataSource;

import com.fasterxml.jackson.databind.JsonNode;
import org.flywaydb.core.Flyway;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.MigrationFiles;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * What a DBA sees in psql: every object documented, the claim served by its partial index, and batch functions that
 * read only the rows they are given whatever ANALYZE saw.
 */
@ExtendWith(TestDatabase.Extension.class)
class SchemaTest {

    private final TestDatabase db;

    SchemaTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void every_function_table_and_view_has_a_comment_for_psql() throws SQLException {
        try (Connection c = db.connect()) {
            assertThat(Sql.rows(c, "SELECT p.oid::regprocedure::text AS fn FROM pg_proc p "
                    + "WHERE p.pronamespace = 'tasktable'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL"))
                    .as("functions without COMMENT ON FUNCTION").isEmpty();
            assertThat(Sql.rows(c, "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'tasktable'::regnamespace "
                    + "AND c.relkind IN ('r', 'v') AND c.relname <> 'flyway_schema_history' "
                    + "AND obj_description(c.oid, 'pg_class') IS NULL"))
                    .as("tables and views without a comment").isEmpty();
            assertThat(Sql.count(c, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'tasktable'::regnamespace"))
                    .isGreaterThanOrEqualTo(14);
        }
    }

    @Test
    void the_claim_reads_the_partial_index_not_the_finished_rows() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            // 20,000 finished and 2,000 future tasks around 10 ready ones.
            Sql.update(c, "INSERT INTO tasktable.finished_task (queue, kind, state, finished_at, attempt) "
                    + "SELECT 'default', 'old', 'succeeded', now(), 1 FROM generate_series(1, 20000)");
            Sql.update(c, "INSERT INTO tasktable.live_task (queue, kind, run_at) "
                    + "SELECT 'default', 'later', now() + interval '1 day' FROM generate_series(1, 2000)");
            Sql.update(c, "INSERT INTO tasktable.live_task (queue, kind) SELECT 'default', 'now' FROM generate_series(1, 10)");
            Sql.update(c, "ANALYZE tasktable.live_task, tasktable.finished_task");

            String plan = Sql.rows(c, "EXPLAIN SELECT t.id FROM tasktable.live_task t WHERE t.state = 'queued' AND t.run_at <= now() "
                            + "AND t.queue <> ALL (ARRAY(SELECT p.name FROM tasktable.queue p WHERE p.paused)) "
                            + "ORDER BY t.priority DESC, t.run_at, t.id LIMIT 10 FOR UPDATE OF t SKIP LOCKED")
                    .stream().map(r -> r.values().iterator().next().toString()).reduce("", (a, b) -> a + b + "\n");

            assertThat(plan).contains("task_claim_idx").doesNotContain("Seq Scan on live_task");
            db.reset();
        }
    }

    /**
     * Migration V5: live_task holds what can still run, finished_task what has finished; each state change moves the
     * row in one statement, keeping its id, and the view tasktable.task shows every task exactly once.
     */
    @Test
    void a_task_is_in_live_task_until_it_finishes_then_in_finished_task() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.value(c, "SELECT tasktable.enqueue_tasks(array_fill(ROW('move', NULL, NULL, NULL, NULL, NULL, NULL)"
                    + "::tasktable.task_spec, ARRAY[5]))");
            List<Map<String, Object>> claimed = Sql.rows(c, "SELECT id, attempt FROM tasktable.claim_tasks(4, 'w')");
            assertThat(claimed).hasSize(4);
            long succeeded = (Long) claimed.get(0).get("id");
            long dead = (Long) claimed.get(1).get("id");
            long cancelled = (Long) claimed.get(2).get("id");
            long running = (Long) claimed.get(3).get("id");
            Sql.value(c, "SELECT tasktable.complete_task(?, 1, '{\"ok\": true}')", succeeded);
            Sql.value(c, "SELECT tasktable.fail_task(?, 1, 'boom', false)", dead);
            Sql.value(c, "SELECT tasktable.cancel_task(?)", cancelled);

            assertThat(states(c, "tasktable.live_task")).containsOnlyKeys("queued", "running")
                    .containsEntry("running", List.of(running));
            assertThat(states(c, "tasktable.finished_task")).containsOnlyKeys("succeeded", "dead", "cancelled")
                    .containsEntry("succeeded", List.of(succeeded)).containsEntry("dead", List.of(dead))
                    .containsEntry("cancelled", List.of(cancelled));
            assertThat(Sql.value(c, "SELECT result ->> 'ok' FROM tasktable.task WHERE id = ?", succeeded)).isEqualTo("true");
            assertThat(Sql.value(c, "SELECT last_error FROM tasktable.task WHERE id = ?", dead)).isEqualTo("boom");

            assertThat(Sql.value(c, "SELECT tasktable.retry_task(?)::text", dead)).isEqualTo("queued");
            assertThat(states(c, "tasktable.live_task").get("queued")).contains(dead);
            assertThat(states(c, "tasktable.finished_task")).doesNotContainKey("dead");
            assertThat(Sql.count(c, "SELECT count(*) - count(DISTINCT id) FROM tasktable.task")).isZero();
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task")).isEqualTo(5);
            db.reset();
        }
    }

    /** finished_task has no foreign key (V5: its check cost a query per completion); a trigger keeps the promise. */
    @Test
    void a_queue_whose_tasks_have_finished_can_be_neither_deleted_nor_renamed() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('short_lived')");
            Sql.value(c, "SELECT tasktable.enqueue_task('once', queue => 'short_lived')");
            Sql.value(c, "SELECT tasktable.complete_task(id, attempt) FROM tasktable.claim_tasks(1, 'w', ARRAY['short_lived'])");
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.live_task WHERE queue = 'short_lived'")).isZero();

            assertThatThrownBy(() -> Sql.update(c, "DELETE FROM tasktable.queue WHERE name = 'short_lived'"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23503"))
                    .hasMessageContaining("queue 'short_lived' still has finished tasks");
            assertThatThrownBy(() -> Sql.update(c, "UPDATE tasktable.queue SET name = 'renamed' WHERE name = 'short_lived'"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23503"));
            assertThat(Sql.update(c, "UPDATE tasktable.queue SET paused = true WHERE name = 'short_lived'")).isEqualTo(1);

            Sql.update(c, "DELETE FROM tasktable.finished_task WHERE queue = 'short_lived'");
            assertThat(Sql.update(c, "DELETE FROM tasktable.queue WHERE name = 'short_lived'")).isEqualTo(1);
            db.reset();
        }
    }

    /** live_task has no foreign key either (V7: its check cost a query per enqueued task); triggers and locks keep it. */
    @Test
    void a_queue_with_live_tasks_can_be_neither_deleted_nor_renamed_and_no_task_moves_to_an_unknown_queue() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('busy'), ('other')");
            long id = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('once', queue => 'busy')");

            assertThatThrownBy(() -> Sql.update(c, "DELETE FROM tasktable.queue WHERE name = 'busy'"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23503"))
                    .hasMessageContaining("queue 'busy' still has queued or running tasks");
            assertThatThrownBy(() -> Sql.update(c, "UPDATE tasktable.queue SET name = 'renamed' WHERE name = 'busy'"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23503"));
            assertThatThrownBy(() -> Sql.update(c, "UPDATE tasktable.live_task SET queue = 'nowhere' WHERE id = ?", id))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23503"))
                    .hasMessageContaining("unknown queue 'nowhere'");
            assertThat(Sql.update(c, "UPDATE tasktable.live_task SET queue = 'other' WHERE id = ?", id)).isEqualTo(1);
            assertThat(Sql.update(c, "DELETE FROM tasktable.queue WHERE name = 'busy'")).isEqualTo(1);
            db.reset();
        }
    }

    /**
     * The races the foreign key used to close: an enqueue in flight and a DELETE of its queue, in either order, and a
     * REPEATABLE READ enqueue into a queue deleted since its snapshot.
     */
    @Test
    void a_queue_cannot_be_deleted_under_an_enqueue_in_flight_nor_enqueued_to_while_being_deleted() throws Exception {
        try (Connection producer = db.connect(); Connection admin = db.connect()) {
            db.reset();
            Sql.update(admin, "INSERT INTO tasktable.queue (name) VALUES ('contested')");

            producer.setAutoCommit(false);
            Sql.value(producer, "SELECT tasktable.enqueue_task('once', queue => 'contested')");
            try (ExecutorService other = Executors.newSingleThreadExecutor()) {
                Future<Integer> delete = other.submit(() -> Sql.update(admin, "DELETE FROM tasktable.queue WHERE name = 'contested'"));
                db.awaitLockWait(admin);
                producer.commit();
                assertThatThrownBy(delete::get).hasCauseInstanceOf(SQLException.class)
                        .cause().satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("23503"));
            }
            assertThat(Sql.count(producer, "SELECT count(*) FROM tasktable.task WHERE queue = 'contested'")).isOne();

            Sql.update(producer, "DELETE FROM tasktable.live_task WHERE queue = 'contested'");
            producer.commit();
            admin.setAutoCommit(false);
            Sql.update(admin, "DELETE FROM tasktable.queue WHERE name = 'contested'");
            producer.setAutoCommit(true);
            try (ExecutorService other = Executors.newSingleThreadExecutor()) {
                Future<Object> enqueue = other.submit(() -> Sql.value(producer, "SELECT tasktable.enqueue_task('late', queue => 'contested')"));
                db.awaitLockWait(producer);
                admin.commit();
                assertThatThrownBy(enqueue::get).hasCauseInstanceOf(SQLException.class)
                        .cause().satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("TT004"));
            }
            admin.setAutoCommit(true);
            assertThat(Sql.count(admin, "SELECT count(*) FROM tasktable.task WHERE queue = 'contested'")).isZero();

            // REPEATABLE READ: the producer's snapshot still shows a queue deleted since; its enqueue must fail
            Sql.update(admin, "INSERT INTO tasktable.queue (name) VALUES ('contested')");
            producer.setAutoCommit(false);
            producer.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);
            assertThat(Sql.count(producer, "SELECT count(*) FROM tasktable.queue WHERE name = 'contested'")).isOne();
            Sql.update(admin, "DELETE FROM tasktable.queue WHERE name = 'contested'");
            assertThatThrownBy(() -> Sql.value(producer, "SELECT tasktable.enqueue_task('stale', queue => 'contested')"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("40001"));
            producer.rollback();
            producer.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            producer.setAutoCommit(true);
            assertThat(Sql.count(admin, "SELECT count(*) FROM tasktable.task WHERE queue = 'contested'")).isZero();
            db.reset();
        }
    }

    private static Map<String, List<Long>> states(Connection c, String table) throws SQLException {
        return Sql.rows(c, "SELECT state::text AS state, array_agg(id ORDER BY id) AS ids FROM " + table + " GROUP BY state")
                .stream().collect(Collectors.toMap(r -> (String) r.get("state"), r -> {
                    try {
                        return List.of((Long[]) ((Array) r.get("ids")).getArray());
                    } catch (SQLException e) {
                        throw new IllegalStateException(e);
                    }
                }));
    }

    /**
     * The plans that went wrong in bench drain (migration V3): with 500 ids and statistics that saw every task
     * queued, the claim hashed the whole table to join its ids back, and completion, failure and heartbeat scanned
     * the table with the id array rescanned per row. None of these calls may read the table by seq scan.
     */
    @Test
    void batch_functions_read_only_the_tasks_they_are_given_whatever_analyze_saw() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "INSERT INTO tasktable.live_task (queue, kind) SELECT 'default', 'noop' FROM generate_series(1, 20000)");
            Sql.update(c, "ANALYZE tasktable.live_task, tasktable.finished_task");

            List<Map<String, Object>> claimed = seqScanFree(c, "claim_tasks",
                    () -> Sql.rows(c, "SELECT id, attempt FROM tasktable.claim_tasks(500, 'w')"));
            assertThat(claimed).hasSize(500);
            Array ids = c.createArrayOf("bigint", claimed.stream().map(r -> r.get("id")).toArray());
            Array attempts = c.createArrayOf("integer", claimed.stream().map(r -> r.get("attempt")).toArray());

            assertThat(seqScanFree(c, "extend_lease",
                    () -> Sql.value(c, "SELECT cardinality(tasktable.extend_lease(?, ?))", ids, attempts))).isEqualTo(500);
            assertThat(seqScanFree(c, "complete_tasks",
                    () -> Sql.value(c, "SELECT cardinality(tasktable.complete_tasks(?[1:250], ?[1:250]))", ids, attempts)))
                    .isEqualTo(250);
            assertThat(seqScanFree(c, "fail_tasks",
                    () -> Sql.count(c, "SELECT count(*) FROM tasktable.fail_tasks(?, ?, array_fill('boom'::text, ARRAY[500]))",
                            ids, attempts))).isEqualTo(250);
            db.reset();
        }
    }

    /**
     * live_task's payload check reads the size before it serializes anything (V10; since V17 on the column's domain
     * type), and still accepts every payload enqueue accepts: 200,000 zeros take 2.4 MB as jsonb but 600 KB as text.
     * By hand, over 1 MB of text is refused as before.
     */
    @Test
    void the_payload_check_takes_what_enqueue_takes_and_refuses_what_it_refuses() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            assertThat(Sql.count(c, "SELECT pg_column_size(j) FROM (SELECT jsonb_agg(0) AS j FROM generate_series(1, 200000)) x"))
                    .as("stored larger than the limit").isGreaterThan(1_048_576);
            assertThat(Sql.count(c, "SELECT tasktable.enqueue_task('zeros', (SELECT jsonb_agg(0) FROM generate_series(1, 200000)))"))
                    .isPositive();
            // the claim writes a new version of the row (until V17 every CHECK of the table ran again on it)
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.claim_tasks(1, 'w')")).isEqualTo(1);
            assertThatThrownBy(() -> Sql.update(c, "INSERT INTO tasktable.live_task (queue, kind, payload) "
                    + "VALUES ('default', 'big', jsonb_build_object('pad', repeat('x', 1100000)))"))
                    .isInstanceOfSatisfying(SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("23514"))
                    .hasMessageContaining("payload_size_limit");
            db.reset();
        }
    }

    /**
     * A page of dead tasks, newest first, reads the dead tasks and not the succeeded history (V13): without the
     * partial index the plan read the whole of task_finished_idx or the table: 21 pages for 20,000 rows, 83
     * for these 100,000.
     */
    @Test
    void a_page_of_dead_tasks_reads_them_and_not_the_history() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "INSERT INTO tasktable.finished_task (queue, kind, state, attempt, finished_at) "
                    + "SELECT 'default', 'noop', CASE WHEN g % 25000 = 0 THEN 'dead' ELSE 'succeeded' END::tasktable.task_state, "
                    + "1, now() FROM generate_series(1, 100000) g");
            Sql.update(c, "ANALYZE tasktable.finished_task");
            String page = "SELECT id FROM tasktable.task WHERE state = 'dead' ORDER BY id DESC LIMIT 51";
            assertThat(Sql.rows(c, page)).extracting(r -> r.get("id")).containsExactly(100000L, 75000L, 50000L, 25000L);

            JsonNode plan = Json.parse(String.valueOf(Sql.value(c, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + page))).get(0).get("Plan");
            long pages = plan.get("Shared Hit Blocks").asLong() + plan.get("Shared Read Blocks").asLong();
            assertThat(pages).as("pages read for a page of dead tasks, plan %s", plan).isLessThanOrEqualTo(20);
            db.reset();
        }
    }

    /**
     * A row that a BEFORE trigger drops is not inserted and conflicts with nothing: enqueue_task answers NULL for it,
     * and enqueue_tasks' retry asks enqueue_task once, where both used to retry forever (a statement that never ends,
     * here cut by statement_timeout with 57014).
     */
    @Test
    void a_row_a_trigger_drops_gets_no_id_and_no_endless_retry() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "CREATE FUNCTION public.drop_some_tasks() RETURNS trigger LANGUAGE plpgsql AS "
                    + "$$ BEGIN RETURN CASE WHEN NEW.kind = 'dropped' THEN NULL ELSE NEW END; END $$");
            Sql.update(c, "CREATE TRIGGER drop_some_tasks BEFORE INSERT ON tasktable.live_task "
                    + "FOR EACH ROW EXECUTE FUNCTION public.drop_some_tasks()");
            try {
                Sql.update(c, "SET statement_timeout = '10s'");
                assertThat(Sql.value(c, "SELECT tasktable.enqueue_task('dropped')")).isNull();
                Object[] ids = (Object[]) ((Array) Sql.value(c, "SELECT tasktable.enqueue_tasks(ARRAY["
                        + "ROW('kept', NULL, NULL, NULL, NULL, NULL, 'k'), ROW('dropped', NULL, NULL, NULL, NULL, NULL, NULL)"
                        + "]::tasktable.task_spec[])")).getArray();
                assertThat(ids[0]).isNotNull();
                assertThat(ids[1]).isNull();
                assertThat(Sql.rows(c, "SELECT kind FROM tasktable.task")).containsExactly(Map.of("kind", "kept"));
            } finally {
                Sql.update(c, "RESET statement_timeout");
                Sql.update(c, "DROP TRIGGER drop_some_tasks ON tasktable.live_task");
                Sql.update(c, "DROP FUNCTION public.drop_some_tasks()");
                db.reset();
            }
        }
    }

    /**
     * enqueue_tasks keeps the plan it made at its first call for the whole session (V9). Made while ANALYZE had seen
     * no task (a new install), that plan must still find an existing dedup key by index once the table holds many:
     * without enable_seqscan = off it read all 20,000 rows per call.
     */
    @Test
    void enqueue_finds_a_dedup_key_by_index_with_the_plan_it_made_on_an_empty_table() throws SQLException {
        try (Connection c = db.connect()) {
            db.reset();
            Sql.update(c, "ANALYZE tasktable.live_task");
            // the session's first calls: the plans are made now, from statistics that saw no task (the second
            // call finds the first's key, so enqueue_task's lookup of a taken key is planned too)
            long first = Sql.count(c, "SELECT tasktable.enqueue_task('first', dedup_key => 'k0')");
            assertThat(Sql.count(c, "SELECT tasktable.enqueue_task('first', dedup_key => 'k0')")).isEqualTo(first);
            Sql.update(c, "INSERT INTO tasktable.live_task (queue, kind, dedup_key) "
                    + "SELECT 'default', 'noop', 'd' || g FROM generate_series(1, 20000) g");
            long existing = Sql.count(c, "SELECT id FROM tasktable.live_task WHERE dedup_key = 'd5'");

            assertThat(seqScanFree(c, "enqueue_task",
                    () -> Sql.count(c, "SELECT tasktable.enqueue_task('again', dedup_key => 'd5')"))).isEqualTo(existing);
            assertThat(seqScanFree(c, "enqueue_tasks", () -> Sql.count(c, "SELECT cardinality(tasktable.enqueue_tasks(ARRAY["
                    + "ROW('again', NULL, NULL, NULL, NULL, NULL, 'd7')::tasktable.task_spec, "
                    + "ROW('new', NULL, NULL, NULL, NULL, NULL, 'fresh')::tasktable.task_spec]))"))).isEqualTo(2);
            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.live_task")).as("only 'fresh' was added").isEqualTo(20_002);
            db.reset();
        }
    }

    /**
     * CREATE OR REPLACE FUNCTION drops the SET clauses it does not repeat, so a later migration could silently bring
     * back planning per call (V4) or the plans that rescan the id array (V3); this keeps them in sight.
     */
    @Test
    void the_hot_functions_keep_their_planner_settings() throws SQLException {
        try (Connection c = db.connect()) {
            Map<String, String> settings = Sql.rows(c, "SELECT p.proname, array_to_string(p.proconfig, ',') AS config "
                    + "FROM pg_proc p WHERE p.pronamespace = 'tasktable'::regnamespace AND p.proname IN "
                    + "('claim_tasks', 'complete_tasks', 'fail_tasks', 'extend_lease', 'enqueue_tasks', 'enqueue_task')").stream()
                    .collect(Collectors.toMap(r -> (String) r.get("proname"), r -> String.valueOf(r.get("config"))));
            assertThat(settings).hasSize(6);
            settings.forEach((fn, config) -> assertThat(config).as(fn)
                    .contains("plan_cache_mode=force_generic_plan", "jit=off"));
            for (String fn : List.of("enqueue_tasks", "enqueue_task")) {
                assertThat(settings.get(fn)).as(fn).contains("enable_seqscan=off");
            }
            for (String fn : List.of("complete_tasks", "fail_tasks", "extend_lease")) {
                assertThat(settings.get(fn)).as(fn).contains("enable_seqscan=off", "enable_nestloop=off");
            }
        }
    }

    private interface SqlCall<T> {
        T run() throws SQLException;
    }

    /**
     * Runs a call in a transaction of its own and asserts it read no row of live_task or finished_task by seq scan, nested
     * function calls included. pg_stat_xact_user_tables also holds counts of earlier transactions not yet
     * reported, so the call is measured as a difference within its transaction (nothing is reported mid-transaction).
     */
    private static <T> T seqScanFree(Connection c, String name, SqlCall<T> call) throws SQLException {
        String seqRowsRead = "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_user_tables WHERE relid IN ('tasktable.live_task'::regclass, 'tasktable.finished_task'::regclass)";
        c.setAutoCommit(false);
        try {
            long before = Sql.count(c, seqRowsRead);
            T result = call.run();
            assertThat(Sql.count(c, seqRowsRead) - before).as("rows of tasktable.task %s read by seq scan", name).isZero();
            c.commit();
            return result;
        } finally {
            c.setAutoCommit(true);
        }
    }

    /**
     * Migration V17 builds live_task again, its columns in a new order and its single-column checks on domain types.
     * On an installation at V16 with tasks queued, running, retried and finished, under the DBA guide's roles, the
     * upgrade keeps every task as it was, the ids go on where they were, the grants, comments and storage settings
     * stay, the functions go on with the tasks it moved (the one running completes at its attempt, the dedup key still
     * holds, the claim takes the queued ones in order), and what the table's CHECKs refused is still refused.
     */
    @Test
    void upgrading_to_v17_rebuilds_live_task_keeping_its_tasks_ids_grants_comments_and_settings() throws Exception {
        String suffix = "_v17_" + ProcessHandle.current().pid();
        DataSource v16 = db.createEmptyDatabase().dataSource("tasktable-schema-test");
        Flyway.configure().configuration(Migrations.flyway(v16).getConfiguration()).target("16").load().migrate();
        List<String> roles = List.of("tasktable_producer" + suffix, "tasktable_worker" + suffix, "tasktable_admin" + suffix);
        try (Connection c = v16.getConnection()) {
            try {
                for (String statement : WorkerRolesTest.guideRoles(suffix)) {
                    Sql.update(c, statement);
                }
                long low = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('low', '{\"n\": 1}', max_attempts => 3)");
                long high = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('high', '[1, 2]', priority => 7, "
                        + "dedup_key => 'once')");
                Sql.value(c, "SELECT tasktable.enqueue_task('later', '{}', run_at => now() + interval '1 hour')");
                long running = (Long) Sql.value(c, "SELECT id FROM tasktable.claim_tasks(1, 'before', ARRAY['default'])");
                long done = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('done', '{}', priority => 9)");
                assertThat(Sql.value(c, "SELECT id FROM tasktable.claim_tasks(1, 'before')")).isEqualTo(done);
                Sql.value(c, "SELECT tasktable.complete_task(?, 1, '{\"ok\": true}')", done);
                long retried = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('retried', '{}', priority => 8)");
                assertThat(Sql.value(c, "SELECT id FROM tasktable.claim_tasks(1, 'before')")).isEqualTo(retried);
                Sql.value(c, "SELECT tasktable.fail_task(?, 1, 'boom', retry_at => now() + interval '1 hour')", retried);
                assertThat(running).isEqualTo(high);

                // the settings docs/dba-guide.md suggests, one for the TOAST table, and a statistics target
                Sql.update(c, "ALTER TABLE tasktable.live_task SET (autovacuum_vacuum_scale_factor = 0.01, fillfactor = 80, "
                        + "toast.autovacuum_enabled = false)");
                Sql.update(c, "ALTER TABLE tasktable.live_task ALTER COLUMN queue SET STATISTICS 500");

                String tasks = "SELECT * FROM tasktable.task ORDER BY id";
                String settings = "SELECT h.reloptions::text AS options, t.reloptions::text AS toast_options, "
                        + "(SELECT string_agg(a.attname || ' ' || a.attstattarget, ', ') FROM pg_attribute a "
                        + " WHERE a.attrelid = h.oid AND a.attnum > 0 AND a.attstattarget >= 0) AS statistics "
                        + "FROM pg_class h JOIN pg_class t ON t.oid = h.reltoastrelid WHERE h.oid = 'tasktable.live_task'::regclass";
                String grants = "SELECT c.relname, a.grantee::regrole::text AS grantee, a.privilege_type, a.is_grantable "
                        + "FROM pg_class c, aclexplode(c.relacl) a "
                        + "WHERE c.oid IN ('tasktable.live_task'::regclass, 'tasktable.task_id_seq'::regclass) ORDER BY 1, 2, 3";
                String comments = "SELECT a.attname, col_description(a.attrelid, a.attnum) AS comment, "
                        + "obj_description(a.attrelid, 'pg_class') AS table_comment "
                        + "FROM pg_attribute a WHERE a.attrelid = 'tasktable.live_task'::regclass AND a.attnum > 0 ORDER BY 1";
                List<Map<String, Object>> tasksBefore = Sql.rows(c, tasks);
                List<Map<String, Object>> grantsBefore = Sql.rows(c, grants);
                List<Map<String, Object>> commentsBefore = Sql.rows(c, comments);
                List<Map<String, Object>> settingsBefore = Sql.rows(c, settings);
                assertThat(settingsBefore.getFirst()).containsEntry("statistics", "queue 500");
                assertThat(grantsBefore).extracting(g -> g.get("grantee"))
                        .contains("tasktable_producer" + suffix, "tasktable_worker" + suffix);
                assertThat(commentsBefore).extracting(g -> g.get("comment")).contains("Higher runs first (-1000..1000).");

                assertThat(Migrations.migrate(v16)).isEqualTo(MigrationFiles.count() - 16);

                assertThat(Sql.value(c, "SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute "
                        + "WHERE attrelid = 'tasktable.live_task'::regclass AND attnum > 0 AND NOT attisdropped"))
                        .isEqualTo("id, run_at, created_at, priority, attempt, state, lease_expires_at, started_at, queue, "
                                + "kind, payload, max_attempts, dedup_key, worker, last_error, result, finished_at");
                assertThat(Sql.value(c, "SELECT to_regclass('tasktable.live_task_v16')")).isNull();
                assertThat(Sql.rows(c, tasks)).isEqualTo(tasksBefore);
                assertThat(Sql.rows(c, grants)).isEqualTo(grantsBefore);
                assertThat(Sql.rows(c, comments)).isEqualTo(commentsBefore);
                assertThat(Sql.rows(c, settings)).isEqualTo(settingsBefore);

                long next = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('after', '{}')");
                assertThat(next).isEqualTo(retried + 1);
                assertThat(Sql.value(c, "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d "
                        + "WHERE d.adrelid = 'tasktable.finished_task'::regclass AND d.adnum = 1"))
                        .isEqualTo("nextval('tasktable.task_id_seq'::regclass)");
                assertThat(Sql.value(c, "SELECT tasktable.enqueue_task('high again', '{}', dedup_key => 'once')"))
                        .isEqualTo(high);
                assertThat(Sql.value(c, "SELECT tasktable.complete_task(?, 1)", running)).isEqualTo(true);
                assertThat(Sql.rows(c, "SELECT id, kind, payload::text AS payload, attempt, worker "
                        + "FROM tasktable.claim_tasks(10, 'after')"))
                        .extracting(r -> r.get("id"), r -> r.get("kind"), r -> r.get("payload"), r -> r.get("attempt"),
                                r -> r.get("worker"))
                        .containsExactly(tuple(low, "low", "{\"n\": 1}", 1, "after"), tuple(next, "after", "{}", 1, "after"));
                assertThat(Sql.value(c, "SELECT worker || ' ' || state FROM tasktable.task WHERE id = ?", running))
                        .isEqualTo("before succeeded");
                // the checks of kind, payload, priority, dedup_key and result, now on the columns' types, refuse as the
                // table's CHECKs did, under the same names
                String insert = "INSERT INTO tasktable.live_task (queue, kind, %s) VALUES ('default', 'by hand', %s)";
                Map<String, String> refused = Map.of(
                        "INSERT INTO tasktable.live_task (queue, kind) VALUES ('default', '')", "kind_valid",
                        insert.formatted("payload", "'1'"), "payload_object_or_array",
                        insert.formatted("payload", "jsonb_build_object('pad', repeat('x', 1100000))"), "payload_size_limit",
                        insert.formatted("priority", "1001"), "priority_in_range",
                        insert.formatted("dedup_key", "''"), "dedup_key_valid",
                        insert.formatted("result", "jsonb_build_object('pad', repeat('x', 1100000))"), "result_size_limit");
                refused.forEach((statement, constraint) -> assertThatThrownBy(() -> Sql.update(c, statement))
                        .as(constraint).isInstanceOfSatisfying(SQLException.class,
                                e -> assertThat(e.getSQLState()).isEqualTo("23514"))
                        .hasMessageContaining(constraint));
            } finally {
                WorkerRolesTest.dropRoles(c, roles);
            }
        }
    }
}
