package io.tasktable.faults;

import static io.tasktable.faults.FaultHarness.within;
import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.tasktable.ConnectionPool;
import io.tasktable.Worker;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;
import io.tasktable.testing.Workers;

/**
 * Scenario 10: the connection dies while a completion commits, so the worker cannot know whether it did. A
 * deferred constraint trigger (test-only) makes the commit of a completion wait on an advisory lock the test
 * holds; the test terminates that backend mid-commit. The other half (the commit went through, the answer was
 * lost) is replayed at the SQL level: the retried completion must be a harmless no-op.
 */
@Tag("faults")
@ExtendWith(TestDatabase.Extension.class)
class CommitFaultsTest {

    private static final long COMMIT_GATE = 4_242;

    private final TestDatabase db;

    CommitFaultsTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void a_completion_killed_during_commit_is_retried_and_the_task_ends_once() throws Exception {
        int stalls = Faults.count(5, 20);
        int tasks = Faults.count(500, 5_000);
        try (FaultHarness h = new FaultHarness(db);
             Connection gate = db.connect();
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-commit", ConnectionPool.DEFAULT_SIZE)) {
            installStall(h, stalls);
            try {
                Sql.value(gate, "SELECT pg_advisory_lock(?)", COMMIT_GATE);
                List<Long> ids = h.enqueueRecords(tasks, 0);
                Duration worst = Duration.ZERO;
                try (Worker worker = Worker.start(pool, FaultWorkerMain.handlers(h.effects), Workers.FAST)) {
                    for (int k = 0; k < stalls; k++) {
                        Sql.value(h.c, "SELECT pg_terminate_backend(?)", committing(h, "tt-commit"));
                        long killedAt = System.nanoTime();
                        long before = h.succeeded(ids);
                        if (k == stalls - 1) {
                            Sql.value(gate, "SELECT pg_advisory_unlock(?)", COMMIT_GATE);
                        }
                        within(Duration.ofSeconds(30)).until(() -> h.succeeded(ids) > before
                                || Sql.count(h.c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tt-commit' "
                                + "AND wait_event = 'advisory'") > 0);
                        Duration recovery = Duration.ofNanos(System.nanoTime() - killedAt);
                        worst = recovery.compareTo(worst) > 0 ? recovery : worst;
                    }
                    within(Duration.ofMinutes(2)).until(() -> h.unfinished(ids) == 0);
                }
                Ledger.Result result = h.ledger.account("10 connection killed during COMMIT of a completion", stalls, ids, worst);
                assertThat(result.lost()).isZero();
                assertThat(result.completedTwice()).isZero();
                assertThat(result.executedMoreThanOnce()).as("the completion is retried, not the handler").isZero();
                assertThat(h.ledger.states(ids)).isEqualTo(Map.of("succeeded", (long) tasks));
            } finally {
                dropStall(h);
            }
        }
    }

    /** The first {@code stalls} completions (one per row) wait at commit for the gate, an advisory lock. */
    private static void installStall(FaultHarness h, int stalls) throws Exception {
        try (Statement s = h.c.createStatement()) {
            s.execute("CREATE SEQUENCE IF NOT EXISTS public.commit_stall_seq");
            s.execute("SELECT setval('public.commit_stall_seq', 1, false)");
            s.execute("CREATE OR REPLACE FUNCTION public.stall_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    + "BEGIN IF nextval('public.commit_stall_seq') <= " + stalls + " THEN "
                    + "PERFORM pg_advisory_xact_lock(" + COMMIT_GATE + "); END IF; RETURN NULL; END $$");
            s.execute("CREATE CONSTRAINT TRIGGER stall_commit AFTER INSERT ON tasktable.finished_task "
                    + "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.state = 'succeeded') "
                    + "EXECUTE FUNCTION public.stall_commit()");
        }
    }

    private static void dropStall(FaultHarness h) throws Exception {
        try (Statement s = h.c.createStatement()) {
            s.execute("DROP TRIGGER IF EXISTS stall_commit ON tasktable.finished_task");
            s.execute("DROP FUNCTION IF EXISTS public.stall_commit()");
        }
    }

    /** Pid of the worker backend stuck committing a completion. */
    private static int committing(FaultHarness h, String app) {
        List<Integer> pids = new ArrayList<>();
        within(Duration.ofSeconds(30)).until(() -> {
            pids.clear();
            Sql.rows(h.c, "SELECT pid FROM pg_stat_activity WHERE application_name = ? "
                    + "AND wait_event_type = 'Lock' AND wait_event = 'advisory'", app).forEach(r -> pids.add((Integer) r.get("pid")));
            return !pids.isEmpty();
        });
        return pids.getFirst();
    }

    /**
     * Regression (found by the full run of the scenario above, 65 of 5000 tasks ran twice): the heartbeat renewed
     * only the leases of running handlers, so a finished task whose completion kept failing for longer than the
     * lease (the reporter's retries back off to 2 s) was rescued and run again although its worker knew the
     * outcome. Here every commit of a completion fails with a serialization failure (transient, retried) for
     * three times the lease.
     */
    @Test
    void a_completion_failing_for_longer_than_the_lease_keeps_the_lease_and_runs_once() throws Exception {
        try (FaultHarness h = new FaultHarness(db);
             ConnectionPool pool = ConnectionPool.open(db.url(), "tt-commit-lease", ConnectionPool.DEFAULT_SIZE)) {
            try (Statement s = h.c.createStatement()) {
                s.execute("CREATE TABLE public.commit_gate AS SELECT clock_timestamp() + interval '3 seconds' AS until");
                s.execute("CREATE OR REPLACE FUNCTION public.fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                        + "BEGIN IF clock_timestamp() < (SELECT until FROM public.commit_gate) THEN "
                        + "RAISE EXCEPTION 'simulated commit failure' USING ERRCODE = '40001'; END IF; RETURN NULL; END $$");
                s.execute("CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON tasktable.finished_task "
                        + "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.state = 'succeeded') "
                        + "EXECUTE FUNCTION public.fail_commit()");
            }
            try {
                List<Long> ids = h.enqueueRecords(1, 0);
                try (Worker worker = Worker.start(pool, FaultWorkerMain.handlers(h.effects),
                        Workers.FAST.withLease(Duration.ofSeconds(1)))) {
                    within(Duration.ofSeconds(30)).until(() -> h.unfinished(ids) == 0);
                }
                Ledger.Result result = h.ledger.account("10c completion failing at commit for 3 s, lease 1 s", 1, ids,
                        Duration.ZERO);
                assertThat(h.count("id = ANY (?) AND state = 'succeeded' AND attempt = 1", (Object) ids.toArray(Long[]::new)))
                        .as("never rescued").isEqualTo(1);
                assertThat(result.executedMoreThanOnce()).isZero();
            } finally {
                try (Statement s = h.c.createStatement()) {
                    s.execute("DROP TRIGGER IF EXISTS fail_commit ON tasktable.finished_task");
                    s.execute("DROP FUNCTION IF EXISTS public.fail_commit()");
                    s.execute("DROP TABLE IF EXISTS public.commit_gate");
                }
            }
        }
    }

    @Test
    void a_completion_that_committed_but_lost_its_answer_is_a_no_op_when_retried() throws Exception {
        int tasks = Faults.count(50, 500);
        try (FaultHarness h = new FaultHarness(db)) {
            List<Long> ids = h.enqueueRecords(tasks, 0);
            List<Map<String, Object>> claimed = Sql.rows(h.c, "SELECT id, attempt FROM tasktable.claim_tasks(?, 'lost-answer')", tasks);
            Long[] claimedIds = claimed.stream().map(r -> (Long) r.get("id")).toArray(Long[]::new);
            Integer[] attempts = claimed.stream().map(r -> (Integer) r.get("attempt")).toArray(Integer[]::new);
            for (Map<String, Object> r : claimed) {
                h.effects.record((Long) r.get("id"), (Integer) r.get("attempt"));
            }
            // the first call commits; its caller never hears (its connection died): it sends the same call again
            assertThat(Sql.count(h.c, "SELECT cardinality(tasktable.complete_tasks(?, ?))", claimedIds, attempts)).isEqualTo(tasks);
            try (Connection retry = db.connect()) {
                assertThat(Sql.count(retry, "SELECT cardinality(tasktable.complete_tasks(?, ?))", claimedIds, attempts)).isZero();
                assertThat(Sql.value(retry, "SELECT tasktable.complete_task(?, ?)", claimedIds[0], attempts[0])).isEqualTo(false);
            }
            Ledger.Result result = h.ledger.account("10b completion committed, answer lost, retried", 1, ids, Duration.ZERO);
            assertThat(result.lost()).isZero();
            assertThat(result.completedTwice()).isZero();
            assertThat(h.ledger.states(ids)).isEqualTo(Map.of("succeeded", (long) tasks));
        }
    }
}
