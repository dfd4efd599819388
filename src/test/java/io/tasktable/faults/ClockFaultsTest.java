package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.NewTask;
import io.tasktable.Worker;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * Scenario 5: run_at far in the past and far in the future, tasks due in a few seconds, and tasks running for
 * longer than their whole lease (1 s, the shortest allowed), kept only by heartbeats.
 */
@Tag("faults")
@ExtendWith(TestDatabase.Extension.class)
class ClockFaultsTest {

    private final TestDatabase db;

    ClockFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void nothing_runs_early_nothing_due_starves_and_heartbeats_outlast_a_one_second_lease() throws Exception {
        int each = Faults.count(200, 2_000);
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-clock", ConnectionPool.DEFAULT_SIZE)) {
            List<Long> past = enqueue(h, each, Instant.parse("1970-01-01T00:00:00Z"), 0);
            List<Long> now = h.enqueueRecords(each, 0);
            List<Long> soon = enqueue(h, 20, Instant.now().plusSeconds(3), 0);
            List<Long> future = enqueue(h, 20, Instant.parse("2200-01-01T00:00:00Z"), 0);
            List<Long> longer = enqueue(h, 5, null, 2_500);
            List<Long> due = new ArrayList<>(past);
            due.addAll(now);
            due.addAll(soon);
            due.addAll(longer);
            long started = System.nanoTime();
            try (Worker worker = Worker.start(pool, FaultWorkerMain.handlers(h.effects),
                    Workers.FAST.withConcurrency(16).withLease(Duration.ofSeconds(1)))) {
                within(Duration.ofSeconds(60)).until(() -> h.unfinished(due) == 0);
            }
            Duration drain = Duration.ofNanos(System.nanoTime() - started);
            List<Long> all = new ArrayList<>(due);
            all.addAll(future);
            Ledger.Result result = h.ledger.account("5 clock: run_at 1970/now/+3s/2200, 1 s leases", 1, all, drain);
            assertThat(h.count("id = ANY (?) AND state = 'succeeded' AND attempt = 1", (Object) due.toArray(Long[]::new)))
                    .as("every due task ran once, none rescued despite the 1 s lease").isEqualTo(due.size());
            assertThat(h.count("id = ANY (?) AND started_at < run_at", (Object) due.toArray(Long[]::new)))
                    .as("nothing started before its run_at").isZero();
            assertThat(h.count("id = ANY (?) AND state = 'queued' AND attempt = 0", (Object) future.toArray(Long[]::new)))
                    .as("far-future tasks wait").isEqualTo(future.size());
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(result.executedMoreThanOnce()).isZero();
        }
    }

    private static List<Long> enqueue(FaultHarness h, int count, Instant runAt, int ms) {
        return h.client.enqueueAll(IntStream.range(0, count).mapToObj(i -> {
            NewTask task = NewTask.of("record", "{\"ms\": " + ms + "}");
            return runAt == null ? task : task.runAt(runAt);
        }).toList());
    }
}
