package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * The SQL API from other languages, with the examples in {@code examples/} run for real: tasks enqueued from
 * Java are done by the Python and Node workers, tasks enqueued from psql by the Java worker, each exactly
 * once; and a failing handler ends the same way in every language, because SQL decides.
 */
@ExtendWith(TestDatabase.Extension.class)
class CrossLanguageTest {

    private static final String PYTHON = "/usr/bin/python3";
    private static final Path NODE_MODULES = Path.of("examples", "node", "node_modules", "pg");

    private final TestDatabase db;
    private Connection c;

    CrossLanguageTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void queuesAndEffectLog() throws SQLException {
        db.reset();
        c = db.connect();
        Sql.update(c, "DROP TABLE IF EXISTS example_effect, example_signup, example_outbox");
        Sql.update(c, "CREATE TABLE example_effect (task_id bigint NOT NULL, attempt integer NOT NULL, "
                + "language text NOT NULL, UNIQUE (task_id, attempt))");
        for (String queue : List.of("py", "node", "java")) {
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES (?)", queue);
        }
    }

    @AfterEach
    void close() throws SQLException {
        c.close();
    }

    private String libpqUrl() {
        DatabaseUrl u = db.url();
        return "postgresql://" + u.user() + (u.password().isEmpty() ? "" : ":" + u.password()) + "@" + u.host() + ":"
                + u.port() + "/" + u.database();
    }

    /** Runs a command with DATABASE_URL set; returns its output, failing the test on a non-zero exit. */
    private String run(List<String> command) throws Exception {
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        builder.environment().put("DATABASE_URL", libpqUrl());
        Process process = builder.start();
        CompletableFuture<String> output = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        assertThat(process.waitFor(120, TimeUnit.SECONDS)).as("%s finished", command).isTrue();
        String text = output.get(10, TimeUnit.SECONDS);
        assertThat(process.exitValue()).as("%s:%n%s", command, text).isZero();
        return text;
    }

    private List<String> python(String... args) {
        assertThat(Path.of(PYTHON)).as("Debian's python3 with psycopg2: apt-get install -y python3-psycopg2").exists();
        List<String> command = new ArrayList<>(List.of(PYTHON, "examples/python/worker.py"));
        command.addAll(List.of(args));
        return command;
    }

    private List<String> node(String... args) {
        assertThat(NODE_MODULES).as("the pg package: npm ci --prefix examples/node").exists();
        List<String> command = new ArrayList<>(List.of("node", "examples/node/worker.js"));
        command.addAll(List.of(args));
        return command;
    }

    private List<String> psql(String script, String... variables) {
        DatabaseUrl u = db.url();
        List<String> command = new ArrayList<>(List.of("psql", "-X", "-h", u.host(), "-p", String.valueOf(u.port()),
                "-U", u.user(), "-d", u.database(), "-v", "ON_ERROR_STOP=1"));
        for (String v : variables) {
            command.addAll(List.of("-v", v));
        }
        command.addAll(List.of("-f", script));
        return command;
    }

    @Test
    void tasks_enqueued_from_java_are_done_once_by_the_python_and_node_workers() throws Exception {
        TaskClient client = new TaskClient(db.dataSource());
        List<Long> forPython = client.enqueueAll(IntStream.range(0, 300)
                .mapToObj(i -> NewTask.of("record", "{\"n\": " + i + "}").inQueue("py")).toList());
        List<Long> forNode = client.enqueueAll(IntStream.range(0, 300)
                .mapToObj(i -> NewTask.of("record", "{\"n\": " + i + "}").inQueue("node")).toList());

        CompletableFuture<String> py = CompletableFuture.supplyAsync(() -> unchecked(() -> run(python("--queue", "py", "--exit-when-idle"))));
        CompletableFuture<String> js = CompletableFuture.supplyAsync(() -> unchecked(() -> run(node("--queue", "node", "--exit-when-idle"))));

        assertThat(py.get(150, TimeUnit.SECONDS)).contains("\"completed\": 300");
        assertThat(js.get(150, TimeUnit.SECONDS)).contains("\"completed\":300");
        for (String language : List.of("python", "node")) {
            List<Long> ids = language.equals("python") ? forPython : forNode;
            assertThat(Sql.count(c, "SELECT count(*) FROM example_effect WHERE language = ?", language))
                    .as("%s side effects", language).isEqualTo(ids.size());
            assertThat(Sql.count(c, "SELECT count(DISTINCT task_id) FROM example_effect WHERE language = ? "
                    + "AND task_id = ANY (?)", language, ids.toArray(Long[]::new))).isEqualTo(ids.size());
        }
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded' AND attempt = 1 "
                + "AND result ->> 'worker' LIKE '%:python' AND queue = 'py'")).isEqualTo(300);
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded' AND attempt = 1 "
                + "AND result ->> 'worker' LIKE '%:node' AND queue = 'node'")).isEqualTo(300);
    }

    @Test
    void a_task_enqueued_from_psql_is_done_by_the_java_worker() throws Exception {
        run(psql("examples/psql/enqueue_in_transaction.sql", "email=ada@example.com"));
        long id = (Long) Sql.value(c, "SELECT id FROM tasktable.task WHERE kind = 'send_welcome_email'");
        assertThat(Sql.count(c, "SELECT count(*) FROM example_signup WHERE email = 'ada@example.com'")).isEqualTo(1);

        try (ConnectionPool pool = ConnectionPool.open(db.url(), "cross-language-test", ConnectionPool.DEFAULT_SIZE);
             Worker ignored = Worker.start(pool, Map.of("send_welcome_email", (task, context) -> {
                 Sql.update(c, "INSERT INTO example_effect (task_id, attempt, language) VALUES (?, ?, 'java')",
                         task.id(), task.attempt());
                 return TaskResult.success();
             }), Workers.FAST)) {
            await().atMost(Duration.ofSeconds(20)).until(() -> Sql.state(c, id).equals("succeeded"));
        }
        assertThat(Sql.rows(c, "SELECT task_id, attempt, language FROM example_effect"))
                .containsExactly(Map.of("task_id", id, "attempt", 1, "language", "java"));
    }

    @Test
    void a_task_enqueued_from_java_is_done_by_the_psql_worker_loop() throws Exception {
        long id = new TaskClient(db.dataSource()).enqueue(NewTask.of("send_welcome_email", "{\"to\": \"bo@example.com\"}"));

        String output = run(psql("examples/psql/work_one_task.sql"));

        assertThat(output).contains("claimed task " + id);
        assertThat(Sql.state(c, id)).isEqualTo("succeeded");
        assertThat(Sql.value(c, "SELECT recipient FROM example_outbox WHERE task_id = ?", id)).isEqualTo("bo@example.com");
        assertThat(run(psql("examples/psql/work_one_task.sql"))).contains("no task ready");
    }

    @Test
    void a_failing_handler_gets_the_same_backoff_and_dead_state_in_every_language() throws Exception {
        Sql.update(c, "UPDATE tasktable.queue SET max_attempts = 2, backoff_base = '1 hour', backoff_cap = '1 hour', "
                + "backoff_jitter = 0 WHERE name IN ('py', 'node', 'java')");
        TaskClient client = new TaskClient(db.dataSource());
        Map<String, Long> tasks = Map.of(
                "py", client.enqueue(NewTask.of("always_fail", "{}").inQueue("py")),
                "node", client.enqueue(NewTask.of("always_fail", "{}").inQueue("node")),
                "java", client.enqueue(NewTask.of("always_fail", "{}").inQueue("java")));

        runEveryLanguageOnce();
        for (long id : tasks.values()) {
            Map<String, Object> task = Sql.task(c, id);
            assertThat(task.get("state")).hasToString("queued");
            assertThat(task.get("attempt")).isEqualTo(1);
            assertThat(Sql.value(c, "SELECT run_at - started_at BETWEEN interval '1 hour' AND interval '1 hour 10 seconds' "
                    + "FROM tasktable.task WHERE id = ?", id)).as("backoff of task %s", id).isEqualTo(true);
        }
        Sql.update(c, "UPDATE tasktable.live_task SET run_at = now() WHERE state = 'queued'");
        runEveryLanguageOnce();

        for (Map.Entry<String, Long> e : tasks.entrySet()) {
            Map<String, Object> task = Sql.task(c, e.getValue());
            assertThat(task.get("state")).as(e.getKey()).hasToString("dead");
            assertThat(task.get("attempt")).isEqualTo(2);
            assertThat((String) task.get("last_error")).contains(switch (e.getKey()) {
                case "py" -> "python handler failed on purpose";
                case "node" -> "node handler failed on purpose";
                default -> "java handler failed on purpose";
            });
        }
    }

    /** One pass of each worker over its queue: Python and Node until idle, Java until its task moved on. */
    private void runEveryLanguageOnce() throws Exception {
        run(python("--queue", "py", "--exit-when-idle"));
        run(node("--queue", "node", "--exit-when-idle"));
        long next = Sql.count(c, "SELECT attempt + 1 FROM tasktable.task WHERE queue = 'java'");
        try (ConnectionPool pool = ConnectionPool.open(db.url(), "cross-language-test", ConnectionPool.DEFAULT_SIZE);
             Worker ignored = Worker.start(pool, Map.of("always_fail", (task, context) -> {
                 throw new IllegalStateException("java handler failed on purpose");
             }), Workers.FAST.withQueues(List.of("java")))) {
            await().atMost(Duration.ofSeconds(20)).until(() -> Sql.count(c, "SELECT count(*) FROM tasktable.task "
                    + "WHERE queue = 'java' AND attempt = ? AND state IN ('queued', 'dead')", next) == 1);
        }
    }

    private interface Call<T> {
        T call() throws Exception;
    }

    private static <T> T unchecked(Call<T> call) {
        try {
            return call.call();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
