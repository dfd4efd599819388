package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.NewTask;
import io.tasktable.Worker;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * Scenario 12: steady enqueue and drain for 15 minutes ({@code -Dtasktable.soak.minutes}) next to a 1M-row
 * history of finished tasks; every minute, the wait of the tasks started in it (started_at - run_at, p50/p99)
 * and the task table's size. Both must stay flat. Tagged {@code soak}: run only with
 * {@code mvn surefire:test -Dgroups=soak -Dtasktable.excludedGroups=none}.
 */
@Tag("soak")
@ExtendWith(TestDatabase.Extension.class)
class SoakFaultsTest {

    /** Enqueued per second: a steady load two workers keep up with on two cores. */
    private static final int RATE = 200;

    private final TestDatabase db;

    SoakFaultsTest(TestDatabase db) {
        this.db = db;
    }

    record Sample(int minute, double p50Millis, double p99Millis, long tableBytes, long liveRows) {
    }

    @Test
    void fifteen_minutes_of_steady_load_keep_claim_latency_and_table_size_flat() throws Exception {
        int minutes = Integer.getInteger("tasktable.soak.minutes", 15);
        int history = Integer.getInteger("tasktable.soak.history", 1_000_000);
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-soak", 2 * ConnectionPool.DEFAULT_SIZE)) {
            try (Statement s = h.c.createStatement()) {
                s.execute("INSERT INTO tasktable.queue (name, retention) VALUES ('history', '100 years')");
                s.execute("INSERT INTO tasktable.finished_task (queue, kind, state, attempt, started_at, finished_at, created_at) "
                        + "SELECT 'history', 'record', 'succeeded', 1, now() - interval '1 hour', now() - interval '1 hour', "
                        + "now() - interval '1 hour' FROM generate_series(1, " + history + ")");
                // finished live tasks are pruned after a minute, so the table reaches a steady size
                s.execute("UPDATE tasktable.queue SET retention = '1 minute' WHERE name = 'default'");
                s.execute("VACUUM ANALYZE tasktable.live_task, tasktable.finished_task");
            }
            List<Long> ids = Collections.synchronizedList(new ArrayList<>());
            ScheduledExecutorService load = Executors.newSingleThreadScheduledExecutor();
            List<Sample> samples = new ArrayList<>();
            var options = Workers.FAST.withConcurrency(32).withPruneInterval(Duration.ofSeconds(5));
            try (Worker a = Worker.start(pool, FaultWorkerMain.handlers(h.effects), options);
                 Worker b = Worker.start(pool, FaultWorkerMain.handlers(h.effects), options)) {
                load.scheduleAtFixedRate(() -> ids.addAll(h.client.enqueueAll(IntStream.range(0, RATE / 10)
                        .mapToObj(i -> NewTask.of("record", "{\"ms\": 1}")).toList())), 0, 100, TimeUnit.MILLISECONDS);
                // "Vacuum keeps up" needs a vacuum: where the server runs without autovacuum (this project's CI
                // server sets autovacuum = off), the test vacuums the table once a minute in its place.
                boolean autovacuum = "on".equals(Sql.value(h.c, "SHOW autovacuum"));
                for (int minute = 1; minute <= minutes; minute++) {
                    if (!autovacuum) {
                        try (Statement s = h.c.createStatement()) {
                            s.execute("VACUUM (ANALYZE) tasktable.live_task, tasktable.finished_task");
                        }
                    }
                    Object from = Sql.value(h.c, "SELECT clock_timestamp()");
                    int m = minute;
                    // the load runs for a minute: wait for the clock, not for a condition
                    within(Duration.ofSeconds(90)).pollInterval(Duration.ofSeconds(1))
                            .until(() -> (Boolean) Sql.value(h.c, "SELECT clock_timestamp() >= ?::timestamptz + interval '1 minute'", from));
                    Map<String, Object> row = Sql.rows(h.c, "SELECT coalesce(1000 * extract(epoch FROM percentile_cont(0.5) "
                            + "WITHIN GROUP (ORDER BY started_at - run_at)), 0) AS p50, coalesce(1000 * extract(epoch FROM "
                            + "percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - run_at)), 0) AS p99, "
                            + "pg_total_relation_size('tasktable.live_task') + pg_total_relation_size('tasktable.finished_task') AS bytes, "
                            + "(SELECT count(*) FROM tasktable.task WHERE queue = 'default') AS live "
                            + "FROM tasktable.task WHERE queue = 'default' AND started_at >= ?::timestamptz", from).getFirst();
                    Sample sample = new Sample(m, ((Number) row.get("p50")).doubleValue(), ((Number) row.get("p99")).doubleValue(),
                            ((Number) row.get("bytes")).longValue(), ((Number) row.get("live")).longValue());
                    samples.add(sample);
                    System.out.println("soak " + sample + (autovacuum ? "" : " (VACUUM by the test: autovacuum is off)"));
                }
                load.shutdown();
                assertThat(load.awaitTermination(30, TimeUnit.SECONDS)).isTrue();
                within(Duration.ofMinutes(2)).until(() -> h.unfinished(List.copyOf(ids)) == 0);
            }
            Sample first = samples.get(Math.min(1, samples.size() - 1));
            Sample last = samples.getLast();
            Ledger.Result result = h.ledger.account("12 soak " + minutes + " min at " + RATE + "/s over " + history
                    + " history rows (p99 " + Math.round(first.p99Millis()) + " -> " + Math.round(last.p99Millis()) + " ms, "
                    + first.tableBytes() / 1_048_576 + " -> " + last.tableBytes() / 1_048_576 + " MB)", 1, List.copyOf(ids),
                    Duration.ZERO);
            assertThat(last.p99Millis()).as("claim latency flat").isLessThan(Math.max(200, 3 * first.p99Millis()));
            assertThat(last.tableBytes()).as("table size flat").isLessThan(first.tableBytes() * 3 / 2);
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
        }
    }
}
