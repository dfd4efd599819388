package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * Scenario 4: poison handlers (throwing, hanging past the timeout, returning null or a result the database
 * refuses, exhausting the memory of their own JVM) in a worker process that drains good tasks meanwhile.
 */
@Tag("faults")
@ExtendWith(TestDatabase.Extension.class)
class HandlerFaultsTest {

    private static final List<String> POISON = List.of("throw", "hang", "null", "huge_result", "nul_result", "nul_error", "oom");

    private final TestDatabase db;

    HandlerFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void poison_tasks_go_dead_with_their_reason_and_the_worker_drains_the_rest_once_each() throws Exception {
        int good = Faults.count(2_000, 20_000);
        int each = Faults.count(5, 20);
        try (FaultHarness h = new FaultHarness(db)) {
            List<Long> poison = new ArrayList<>();
            List<Long> goodIds = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                goodIds.addAll(h.enqueueRecords(good / 4, 1));
                for (String kind : POISON) {
                    poison.addAll(h.enqueue(kind, Math.max(1, each / 4), 2));
                }
            }
            long started = System.nanoTime();
            // 128 MB: the oom handler exhausts it within a second; the timeout ends the hanging ones
            h.startWorker("tt-poison", 16, Duration.ofMillis(500), "-Xmx128m");
            within(Duration.ofMinutes(Faults.FULL ? 10 : 2)).until(() -> h.unfinished(goodIds) == 0 && h.unfinished(poison) == 0);
            Duration drain = Duration.ofNanos(System.nanoTime() - started);

            List<Long> all = new ArrayList<>(goodIds);
            all.addAll(poison);
            Ledger.Result result = h.ledger.account("4 poison handlers (" + poison.size() + " of " + all.size() + ")",
                    POISON.size(), all, drain);
            assertThat(h.succeeded(goodIds)).isEqualTo(goodIds.size());
            assertThat(h.count("id = ANY (?) AND state = 'dead' AND attempt <= 2 AND last_error IS NOT NULL",
                    (Object) poison.toArray(Long[]::new))).as("every poison task dead within its 2 attempts (a refused result at once)").isEqualTo(poison.size());
            assertThat(h.count("id = ANY (?) AND last_error LIKE 'lease expired%'", (Object) poison.toArray(Long[]::new)))
                    .as("poison outcomes are reported, not left to expire").isZero();
            for (String kind : POISON) {
                System.out.println("poison " + kind + ": " + Sql.value(h.c, "SELECT left(last_error, 120) FROM tasktable.task "
                        + "WHERE kind = ? ORDER BY id LIMIT 1", kind));
            }
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(result.executedMoreThanOnce()).as("no crash here: nothing runs twice").isZero();
            assertThat(h.ledger.states(all)).isEqualTo(Map.of("succeeded", (long) goodIds.size(), "dead", (long) poison.size()));
        }
    }
}
