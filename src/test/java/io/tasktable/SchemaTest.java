package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.SQLException;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** What a DBA sees in psql: every object documented, the claim served by its partial index. */
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
            Sql.update(c, "INSERT INTO tasktable.task (queue, kind, state, finished_at, attempt) "
                    + "SELECT 'default', 'old', 'succeeded', now(), 1 FROM generate_series(1, 20000)");
            Sql.update(c, "INSERT INTO tasktable.task (queue, kind, run_at) "
                    + "SELECT 'default', 'later', now() + interval '1 day' FROM generate_series(1, 2000)");
            Sql.update(c, "INSERT INTO tasktable.task (queue, kind) SELECT 'default', 'now' FROM generate_series(1, 10)");
            Sql.update(c, "ANALYZE tasktable.task");

            String plan = Sql.rows(c, "EXPLAIN SELECT t.id FROM tasktable.task t WHERE t.state = 'queued' AND t.run_at <= now() "
                            + "AND t.queue <> ALL (ARRAY(SELECT p.name FROM tasktable.queue p WHERE p.paused)) "
                            + "ORDER BY t.priority DESC, t.run_at, t.id LIMIT 10 FOR UPDATE OF t SKIP LOCKED")
                    .stream().map(r -> r.values().iterator().next().toString()).reduce("", (a, b) -> a + b + "\n");

            assertThat(plan).contains("task_claim_idx").doesNotContain("Seq Scan on task");
            db.reset();
        }
    }
}
