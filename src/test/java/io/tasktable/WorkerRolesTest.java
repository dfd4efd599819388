package io.tasktable;

import static io.tasktable.testing.Workers.FAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * The roles docs/dba-guide.md suggests are enough for the Java side: a login role in its producer group enqueues, and
 * a worker whose login role is only in its worker group claims, completes, rescues and prunes, and is not asked to
 * VACUUM a table it does not own. The guide's block runs as written, its group roles renamed per run (roles are
 * cluster-wide), on a fresh database of its own (the block revokes EXECUTE from PUBLIC).
 */
@ExtendWith(TestDatabase.Extension.class)
class WorkerRolesTest {

    private static final String PASSWORD = "tasktable-roles-test";

    private final TestDatabase db;

    WorkerRolesTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void the_dba_guides_worker_role_runs_a_worker_and_its_producer_role_enqueues() throws Exception {
        String suffix = "_" + ProcessHandle.current().pid();
        String producer = "tasktable_roles_producer" + suffix;
        String worker = "tasktable_roles_worker" + suffix;
        DatabaseUrl owner = db.createEmptyDatabase();
        Migrations.migrate(owner.dataSource("tasktable-roles-test"));
        List<String> roles = List.of(producer, worker, "tasktable_producer" + suffix, "tasktable_worker" + suffix,
                "tasktable_admin" + suffix);

        try (Connection c = owner.dataSource("tasktable-roles-test").getConnection()) {
            try {
                for (String statement : guideRoles(suffix)) {
                    Sql.update(c, statement);
                }
                Sql.update(c, "CREATE ROLE " + producer + " LOGIN PASSWORD '" + PASSWORD + "' IN ROLE tasktable_producer"
                        + suffix);
                Sql.update(c, "CREATE ROLE " + worker + " LOGIN PASSWORD '" + PASSWORD + "' IN ROLE tasktable_worker"
                        + suffix);
                Workers.fastBackoff(c);
                // kept a second, so that prune (under the worker's role) has them to delete
                Sql.update(c, "UPDATE tasktable.queue SET retention = '1 second'");
                runAsTheGuidesRoles(c, login(owner, producer), login(owner, worker));
            } finally {
                dropRoles(c, roles);
            }
        }
    }

    /** Drops the roles of a run that exist, with what they own and were granted in the connection's database. */
    static void dropRoles(Connection c, List<String> roles) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String role : roles) {
                if (Sql.count(c, "SELECT count(*) FROM pg_roles WHERE rolname = ?", role) > 0) {
                    s.execute("DROP OWNED BY " + role);
                    s.execute("DROP ROLE " + role);
                }
            }
        }
    }

    /**
     * The statements of docs/dba-guide.md's roles block, as written but for the group roles' names, which end in
     * {@code suffix} (roles are cluster-wide: each run names its own).
     */
    static List<String> guideRoles(String suffix) throws IOException {
        String guide = DocsExamplesTest.sqlBlocks("docs/dba-guide.md", Files.readString(Path.of("docs", "dba-guide.md")))
                .stream().map(DocsExamplesTest.Block::text)
                .filter(text -> text.contains("CREATE ROLE tasktable_worker"))
                .findFirst().orElseThrow(() -> new AssertionError("docs/dba-guide.md: no block creates tasktable_worker"));
        return DocsExamplesTest.statements(guide.replaceAll("\\b(tasktable_(producer|worker|admin))\\b", "$1" + suffix));
    }

    private static DatabaseUrl login(DatabaseUrl url, String role) {
        return new DatabaseUrl(url.host(), url.port(), url.database(), role, PASSWORD, url.params());
    }

    private static void runAsTheGuidesRoles(Connection owner, DatabaseUrl producerUrl, DatabaseUrl workerUrl)
            throws SQLException {
        try (ConnectionPool producerPool = ConnectionPool.open(producerUrl, "tasktable-roles-producer", 2);
             ConnectionPool workerPool = ConnectionPool.open(workerUrl, "tasktable-roles-worker",
                     ConnectionPool.DEFAULT_SIZE)) {
            TaskClient client = new TaskClient(producerPool.dataSource());
            // a task whose worker vanished: claimed with a one-second lease by a worker that never reports
            long abandoned = client.enqueue(NewTask.of("noop", "{}"));
            assertThat(Sql.count(owner,
                    "SELECT count(*) FROM tasktable.claim_tasks(1, 'vanished', NULL, interval '1 second')")).isEqualTo(1);
            client.enqueueAll(IntStream.range(0, 50).mapToObj(i -> NewTask.of("noop", "{\"i\": " + i + "}")).toList());

            try (Connection asWorker = workerPool.dataSource().getConnection()) {
                assertThat(Sql.value(asWorker, Maintenance.MAY_VACUUM_SQL)).as("the worker role may vacuum live_task")
                        .isEqualTo(false);
            }
            Map<Long, Integer> attempts = new ConcurrentHashMap<>();
            AtomicInteger completed = new AtomicInteger();
            AtomicInteger rescued = new AtomicInteger();
            WorkerObserver counting = new WorkerObserver() {
                @Override
                public void completed(int tasks) {
                    completed.addAndGet(tasks);
                }

                @Override
                public void rescued(int tasks) {
                    rescued.addAndGet(tasks);
                }
            };
            try (Worker w = Worker.start(workerPool, Map.of("noop", (task, context) -> {
                attempts.put(task.id(), task.attempt());
                return TaskResult.success();
            }), FAST.withVacuumThreshold(1).withPruneInterval(Duration.ofMillis(100)), counting)) {
                // the 51 completed (complete_tasks), the abandoned one first rescued (rescue_expired_tasks,
                // fail_tasks), then all of them pruned (prune_tasks) a second after they finished: every call as the
                // worker's role
                await("51 tasks completed (one of them rescued first) and pruned, by the worker role")
                        .atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50)).until(() ->
                        completed.get() == 51 && Sql.count(owner, "SELECT count(*) FROM tasktable.task") == 0);
            }
            assertThat(rescued).hasValue(1);
            assertThat(attempts).hasSize(51).containsEntry(abandoned, 2);
        }
    }
}
