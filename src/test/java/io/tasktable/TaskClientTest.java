package io.tasktable;

import static io.tasktable.testing.SqlStates.assertSqlState;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.Map;

import org.jooq.DSLContext;
import org.jooq.SQLDialect;
import org.jooq.exception.DataAccessException;
import org.jooq.impl.DSL;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/** TaskClient through each of its doors: every field reaches the row, in the caller's transaction, errors by SQLSTATE. */
@ExtendWith(TestDatabase.Extension.class)
class TaskClientTest {

    private final TestDatabase db;

    TaskClientTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void reset() throws SQLException {
        db.reset();
    }

    @Test
    void every_field_of_a_new_task_reaches_its_row() throws SQLException {
        Instant later = Instant.now().plus(1, ChronoUnit.HOURS).truncatedTo(ChronoUnit.MICROS);
        try (Connection c = db.connect()) {
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('mail')");
            long full = TaskClient.enqueue(c, NewTask.of("send_email", "{\"to\": \"ada@example.com\"}").inQueue("mail")
                    .runAt(later).withPriority(-7).withMaxAttempts(3).withDedupKey("welcome:ada"));
            long plain = new TaskClient(db.dataSource()).enqueue(NewTask.of("noop", "[1, 2]"));

            String columns = "SELECT kind, queue, payload::text AS payload, priority, max_attempts, dedup_key, state::text AS state, "
                    + "extract(epoch FROM run_at)::numeric(20, 6)::text AS run_at, run_at <= now() AS due FROM tasktable.task WHERE id = ?";
            Map<String, Object> row = Sql.rows(c, columns, full).getFirst();
            assertThat(row).containsEntry("kind", "send_email").containsEntry("queue", "mail")
                    .containsEntry("priority", -7).containsEntry("max_attempts", 3).containsEntry("dedup_key", "welcome:ada")
                    .containsEntry("state", "queued").containsEntry("due", false)
                    .containsEntry("run_at", String.format(java.util.Locale.ROOT, "%d.%06d", later.getEpochSecond(), later.getNano() / 1000));
            assertThat(Json.parse((String) row.get("payload"))).isEqualTo(Json.parse("{\"to\": \"ada@example.com\"}"));

            Map<String, Object> defaults = Sql.rows(c, columns, plain).getFirst();
            assertThat(defaults).containsEntry("kind", "noop").containsEntry("queue", "default").containsEntry("priority", 0)
                    .containsEntry("dedup_key", null).containsEntry("max_attempts", null).containsEntry("due", true);
            assertThat(Json.parse((String) defaults.get("payload"))).isEqualTo(Json.parse("[1, 2]"));

            assertThat(TaskClient.enqueue(c, NewTask.of("send_email", "{}").inQueue("mail").withDedupKey("welcome:ada")))
                    .as("the live task with the same dedup key").isEqualTo(full);
        }
    }

    @Test
    void a_batch_keeps_every_field_and_any_text_in_input_order() throws SQLException {
        Instant later = Instant.now().plus(1, ChronoUnit.HOURS).truncatedTo(ChronoUnit.MICROS);
        // what an array literal must quote or escape: separators, quotes, backslashes, braces, the word NULL, blanks
        List<String> awkward = List.of("a,b", "say \"hi\"", "back\\slash", "{braces}", "(parens)", "NULL", "null",
                " padded ", "tab\tand\nnewline", "ünïcødé ✓", "x");
        try (Connection c = db.connect()) {
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('mail')");
            List<NewTask> batch = new java.util.ArrayList<>();
            for (String text : awkward) {
                String payload = Json.MAPPER.createObjectNode().put("text", text).set("list", Json.MAPPER.createArrayNode().add(text).add(1)).toString();
                batch.add(NewTask.of(text, payload).withDedupKey(text));
            }
            batch.add(NewTask.of("send_email", "[1, \"two\"]").inQueue("mail").runAt(later).withPriority(-7)
                    .withMaxAttempts(3));
            batch.add(NewTask.of("noop", "{}"));

            List<Long> ids = TaskClient.enqueueAll(c, batch);

            assertThat(ids).hasSize(batch.size()).doesNotContainNull().doesNotHaveDuplicates();
            for (int i = 0; i < batch.size(); i++) {
                NewTask sent = batch.get(i);
                Map<String, Object> row = Sql.rows(c, "SELECT kind, queue, payload::text AS payload, priority, max_attempts, "
                        + "dedup_key, extract(epoch FROM run_at)::numeric(20, 6)::text AS run_at, run_at <= now() AS due "
                        + "FROM tasktable.task WHERE id = ?", ids.get(i)).getFirst();
                assertThat(row).as("task %d of the batch", i + 1).containsEntry("kind", sent.kind())
                        .containsEntry("queue", sent.queue()).containsEntry("priority", sent.priority())
                        .containsEntry("max_attempts", sent.maxAttempts().isPresent() ? sent.maxAttempts().getAsInt() : null)
                        .containsEntry("dedup_key", sent.dedupKey().orElse(null))
                        .containsEntry("due", sent.runAt().isEmpty());
                assertThat(Json.parse((String) row.get("payload"))).isEqualTo(Json.parse(sent.payloadJson()));
            }
            assertThat(Sql.value(c, "SELECT extract(epoch FROM run_at)::numeric(20, 6)::text FROM tasktable.task WHERE id = ?",
                    ids.get(awkward.size())))
                    .isEqualTo(String.format(java.util.Locale.ROOT, "%d.%06d", later.getEpochSecond(), later.getNano() / 1000));

            assertThat(TaskClient.enqueueAll(c, List.of(NewTask.of("again", "{}").withDedupKey("NULL"), NewTask.of("new", "{}"))))
                    .as("a dedup key already live answers its task; an empty batch answers nothing")
                    .startsWith(ids.get(awkward.indexOf("NULL")));
            assertThat(TaskClient.enqueueAll(c, List.of())).isEmpty();
        }
    }

    @Test
    void the_batch_call_is_the_one_the_sql_api_page_shows_other_drivers() throws IOException {
        StringBuilder numbered = new StringBuilder();
        int parameter = 0;
        for (char ch : TaskClient.ENQUEUE_ALL_SQL.toCharArray()) {
            numbered.append(ch == '?' ? "$" + ++parameter : String.valueOf(ch));
        }
        assertThat(parameter).isEqualTo(7);
        assertThat(Files.readString(Path.of("docs", "sql-api.md")).replaceAll("\\s+", " "))
                .contains(numbered.toString().replaceAll("\\s+", " "));
    }

    @Test
    void a_task_enqueued_in_a_transaction_exists_only_if_it_commits() throws SQLException {
        try (Connection c = db.connect()) {
            DSLContext dsl = DSL.using(db.dataSource(), SQLDialect.POSTGRES);
            long kept = dsl.transactionResult(tx -> TaskClient.enqueue(tx.dsl(), NewTask.of("kept", "{}")));
            assertThatThrownBy(() -> dsl.transaction(tx -> {
                TaskClient.enqueue(tx.dsl(), NewTask.of("lost", "{}"));
                throw new IllegalStateException("the business write failed");
            })).hasMessageContaining("the business write failed");

            c.setAutoCommit(false);
            long rolledBack = TaskClient.enqueue(c, NewTask.of("lost", "{}"));
            c.rollback();
            c.setAutoCommit(true);

            assertThat(Sql.rows(c, "SELECT id, kind FROM tasktable.task ORDER BY id"))
                    .containsExactly(Map.of("id", kept, "kind", "kept"));
            assertThat(rolledBack).isGreaterThan(kept);
        }
    }

    @Test
    void refusals_keep_their_sqlstate_and_the_servers_message() {
        TaskClient client = new TaskClient(db.dataSource());
        assertSqlState("TT004", () -> client.enqueue(NewTask.of("k", "{}").inQueue("no_such_queue")));
        assertSqlState("TT002", () -> client.enqueue(NewTask.of("k", "42")));
        assertSqlState("TT012", () -> client.enqueue(NewTask.of("k", "{}").withPriority(5000)));
        assertSqlState("22P02", () -> client.enqueue(NewTask.of("k", "{not json")));
        assertThatThrownBy(() -> client.enqueue(NewTask.of("k", "{}").inQueue("no_such_queue")))
                .isInstanceOf(DataAccessException.class)
                .hasMessageContaining("tasktable: unknown queue 'no_such_queue'");
        assertThat(client.enqueueAll(List.of(NewTask.of("k", "{}")))).hasSize(1);
        assertSqlState("TT004", () -> client.enqueueAll(List.of(NewTask.of("k", "{}"), NewTask.of("k", "{}").inQueue("nope"))));
        assertSqlState("22P02", () -> client.enqueueAll(List.of(NewTask.of("k", "{not json"))));
        assertThatThrownBy(() -> client.enqueueAll(List.of(NewTask.of("k", "{}"), NewTask.of("k", "[]").withPriority(5000))))
                .isInstanceOf(DataAccessException.class)
                .hasMessageContaining("priority").hasMessageContaining("task 2 of the batch");
    }
}
