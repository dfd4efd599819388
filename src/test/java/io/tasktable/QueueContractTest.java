package io.tasktable;

import static io.tasktable.testing.SqlStates.assertSqlState;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

import io.tasktable.QueueApi.Claimed;
import io.tasktable.QueueApi.Spec;
import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * The task life cycle of DESIGN.md, scenario by scenario, against a real PostgreSQL. Runs once through the
 * jOOQ bindings and once through plain JDBC (see the subclasses): same SQL, same behaviour.
 */
@ExtendWith(TestDatabase.Extension.class)
abstract class QueueContractTest {

    private static final String WORKER = "worker-1";
    private static final String OTHER_WORKER = "worker-2";

    private final TestDatabase db;
    private final QueueApi api;
    private Connection c;

    QueueContractTest(TestDatabase db, QueueApi api) {
        this.db = db;
        this.api = api;
    }

    @BeforeEach
    void freshDatabase() throws SQLException {
        db.reset();
        c = db.connect();
    }

    @AfterEach
    void closeConnection() throws SQLException {
        c.close();
    }

    private long enqueue(Spec spec) throws SQLException {
        return api.enqueue(c, spec);
    }

    private Claimed claimOne(String worker) throws SQLException {
        List<Claimed> claimed = api.claim(c, 1, worker, null, null);
        assertThat(claimed).as("claimed tasks").hasSize(1);
        return claimed.getFirst();
    }

    private Map<String, Object> row(long id) throws SQLException {
        return Sql.task(c, id);
    }

    private void makeDue(long id) throws SQLException {
        Sql.update(c, "UPDATE tasktable.live_task SET run_at = now() - interval '1 millisecond' WHERE id = ?", id);
    }

    private void expireLease(long id) throws SQLException {
        Sql.update(c, "UPDATE tasktable.live_task SET lease_expires_at = now() - interval '1 second' WHERE id = ?", id);
    }

    private void createQueue(String name) throws SQLException {
        Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES (?)", name);
    }

    // --- life cycle -------------------------------------------------------------------------------

    @Test
    void an_enqueued_task_is_queued_with_the_defaults() throws SQLException {
        long id = enqueue(Spec.of("send_email").payload("{\"to\": \"a@example.com\"}"));

        Map<String, Object> task = row(id);
        assertThat(task.get("state")).hasToString("queued");
        assertThat(task).containsEntry("queue", "default").containsEntry("kind", "send_email")
                .containsEntry("attempt", 0).containsEntry("priority", 0).containsEntry("max_attempts", null);
        assertThat(task.get("payload")).hasToString("{\"to\": \"a@example.com\"}");
        assertThat(Sql.value(c, "SELECT run_at <= now() FROM tasktable.task WHERE id = ?", id)).isEqualTo(true);
    }

    @Test
    void claiming_makes_the_task_running_under_a_lease_held_by_the_worker() throws SQLException {
        long id = enqueue(Spec.of("send_email").payload("{\"to\": \"a@example.com\"}"));

        Claimed claimed = claimOne(WORKER);

        assertThat(claimed.id()).isEqualTo(id);
        assertThat(claimed.kind()).isEqualTo("send_email");
        assertThat(claimed.payload()).isEqualTo("{\"to\": \"a@example.com\"}");
        assertThat(claimed.attempt()).isEqualTo(1);
        assertThat(Sql.state(c, id)).isEqualTo("running");
        assertThat(row(id)).containsEntry("worker", WORKER);
        assertThat(Sql.value(c, "SELECT lease_expires_at - started_at = interval '30 seconds' FROM tasktable.task WHERE id = ?", id))
                .as("lease = the queue's default 30 s").isEqualTo(true);
        assertThat(api.claim(c, 10, OTHER_WORKER, null, null)).as("a running task is not claimed again").isEmpty();
    }

    @Test
    void completing_makes_the_task_succeeded_with_its_result() throws SQLException {
        long id = enqueue(Spec.of("report"));
        Claimed claimed = claimOne(WORKER);

        assertThat(api.complete(c, id, claimed.attempt(), "{\"rows\": 3}")).isTrue();

        Map<String, Object> task = row(id);
        assertThat(task.get("state")).hasToString("succeeded");
        assertThat(task.get("result")).hasToString("{\"rows\": 3}");
        assertThat(task.get("finished_at")).isNotNull();
        assertThat(task.get("lease_expires_at")).isNull();
        assertThat(api.complete(c, id, claimed.attempt(), null)).as("completing twice").isFalse();
    }

    @Test
    void a_queue_that_keeps_no_succeeded_tasks_deletes_them_as_they_complete() throws SQLException {
        createQueue("fleeting");
        Sql.update(c, "UPDATE tasktable.queue SET retention = interval '0' WHERE name = 'fleeting'");
        List<Long> ids = api.enqueueAll(c, List.of(Spec.of("ping").queue("fleeting"), Spec.of("ping").queue("fleeting")));
        List<Claimed> claimed = api.claim(c, 10, WORKER, null, null);
        assertThat(claimed).extracting(Claimed::id).containsExactlyInAnyOrderElementsOf(ids);

        List<Long> done = api.completeAll(c, claimed.stream().mapToLong(Claimed::id).toArray(),
                new int[] {claimed.get(0).attempt(), claimed.get(1).attempt() + 1});

        assertThat(done).as("the stale attempt is refused").containsExactly(claimed.get(0).id());
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", claimed.get(0).id()))
                .as("deleted, not moved to finished_task").isZero();
        assertThat(Sql.state(c, claimed.get(1).id())).isEqualTo("running");
        assertThat(api.complete(c, claimed.get(1).id(), claimed.get(1).attempt(), "{\"kept\": false}")).isTrue();
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE queue = 'fleeting'")).isZero();
        assertThat(api.complete(c, claimed.get(1).id(), claimed.get(1).attempt(), null)).as("completing twice").isFalse();
    }

    @Test
    void a_completion_at_one_attempt_for_all_completes_only_the_tasks_still_held_under_it() throws SQLException {
        createQueue("fleeting");
        Sql.update(c, "UPDATE tasktable.queue SET retention = interval '0' WHERE name = 'fleeting'");
        long held = enqueue(Spec.of("report"));
        long fleeting = enqueue(Spec.of("ping").queue("fleeting"));
        long retried = enqueue(Spec.of("report"));
        long retriedFleeting = enqueue(Spec.of("ping").queue("fleeting"));
        assertThat(api.claim(c, 10, WORKER, null, null)).extracting(Claimed::attempt).containsExactly(1, 1, 1, 1);
        for (long id : new long[] {retried, retriedFleeting}) {
            expireLease(id);
        }
        assertThat(api.rescueExpired(c)).isEqualTo(2);
        makeDue(retried);
        makeDue(retriedFleeting);
        assertThat(api.claim(c, 10, OTHER_WORKER, null, null)).extracting(Claimed::attempt).containsExactly(2, 2);

        // every attempt the same and no result: compared, not joined (V16); attempt 1 is stale for two of them
        assertThat(api.completeAll(c, new long[] {held, fleeting, retried, retriedFleeting}, new int[] {1, 1, 1, 1}))
                .containsExactlyInAnyOrder(held, fleeting);
        assertThat(Sql.state(c, held)).isEqualTo("succeeded");
        assertThat(row(held)).containsEntry("attempt", 1).containsEntry("result", null);
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", fleeting)).as("unkept: deleted").isZero();
        assertThat(Sql.state(c, retried)).isEqualTo("running");
        assertThat(Sql.state(c, retriedFleeting)).isEqualTo("running");

        // an array of NULL results is no result (a client may send one; the Java worker sends NULL since item 45 of
        // docs/performance.md); the task no longer held is left out
        assertThat(Sql.count(c, "SELECT cardinality(tasktable.complete_tasks(ARRAY[?, ?, ?]::bigint[], ARRAY[2, 2, 2], "
                + "ARRAY[NULL, NULL, NULL]::jsonb[]))", retried, retriedFleeting, held)).isEqualTo(2);
        assertThat(Sql.state(c, retried)).isEqualTo("succeeded");
        assertThat(row(retried)).containsEntry("attempt", 2);
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", retriedFleeting)).isZero();
    }

    @Test
    void one_completion_keeps_the_tasks_of_queues_with_a_retention_and_deletes_the_others() throws SQLException {
        createQueue("fleeting");
        Sql.update(c, "UPDATE tasktable.queue SET retention = interval '0' WHERE name = 'fleeting'");
        long kept = enqueue(Spec.of("report"));
        long deleted = enqueue(Spec.of("ping").queue("fleeting"));
        long dead = enqueue(Spec.of("ping").queue("fleeting"));
        List<Claimed> claimed = api.claim(c, 10, WORKER, null, null);
        Map<Long, Integer> attempts = claimed.stream().collect(Collectors.toMap(Claimed::id, Claimed::attempt));

        assertThat(api.completeAll(c, new long[] {kept, deleted}, new int[] {attempts.get(kept), attempts.get(deleted)}))
                .containsExactlyInAnyOrder(kept, deleted);
        assertThat(api.fail(c, dead, attempts.get(dead), "no", false, null)).isEqualTo("dead");

        assertThat(Sql.state(c, kept)).isEqualTo("succeeded");
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", deleted)).isZero();
        assertThat(Sql.state(c, dead)).as("dead tasks follow dead_retention, pruned as before").isEqualTo("dead");
        // the queue's retention is read at each completion
        Sql.update(c, "UPDATE tasktable.queue SET retention = interval '1 hour' WHERE name = 'fleeting'");
        long keptNow = enqueue(Spec.of("ping").queue("fleeting"));
        Claimed again = claimOne(WORKER);
        assertThat(api.complete(c, keptNow, again.attempt(), null)).isTrue();
        assertThat(Sql.state(c, keptNow)).isEqualTo("succeeded");
    }

    @Test
    void a_failure_with_attempts_left_queues_the_task_again_after_backoff() throws SQLException {
        long id = enqueue(Spec.of("webhook"));
        Claimed claimed = claimOne(WORKER);

        assertThat(api.fail(c, id, claimed.attempt(), "HTTP 503", true, null)).isEqualTo("queued");

        Map<String, Object> task = row(id);
        assertThat(task.get("state")).hasToString("queued");
        assertThat(task).containsEntry("last_error", "HTTP 503").containsEntry("lease_expires_at", null)
                .containsEntry("attempt", 1);
        assertThat(Sql.value(c, "SELECT run_at > now() FROM tasktable.task WHERE id = ?", id)).isEqualTo(true);
        assertThat(api.claim(c, 10, WORKER, null, null)).as("not before its backoff").isEmpty();

        makeDue(id);
        assertThat(claimOne(WORKER).attempt()).isEqualTo(2);
    }

    @Test
    void a_failure_on_the_last_attempt_makes_the_task_dead() throws SQLException {
        long id = enqueue(Spec.of("webhook").maxAttempts(1));
        Claimed claimed = claimOne(WORKER);

        assertThat(api.fail(c, id, claimed.attempt(), "HTTP 500", true, null)).isEqualTo("dead");

        Map<String, Object> task = row(id);
        assertThat(task.get("state")).hasToString("dead");
        assertThat(task).containsEntry("last_error", "HTTP 500");
        assertThat(task.get("finished_at")).isNotNull();
    }

    @Test
    void a_failure_marked_not_retryable_makes_the_task_dead_at_once() throws SQLException {
        long id = enqueue(Spec.of("webhook"));
        Claimed claimed = claimOne(WORKER);

        assertThat(api.fail(c, id, claimed.attempt(), "HTTP 404", false, null)).isEqualTo("dead");
        assertThat(row(id)).containsEntry("attempt", 1);
    }

    @Test
    void an_explicit_retry_at_replaces_the_backoff() throws SQLException {
        long id = enqueue(Spec.of("webhook"));
        Claimed claimed = claimOne(WORKER);
        OffsetDateTime retryAt = OffsetDateTime.now().plusHours(2).truncatedTo(ChronoUnit.MILLIS);

        assertThat(api.fail(c, id, claimed.attempt(), "rate limited", true, retryAt)).isEqualTo("queued");

        assertThat(Sql.value(c, "SELECT run_at = ? FROM tasktable.task WHERE id = ?", retryAt, id)).isEqualTo(true);
    }

    @Test
    void a_snoozed_task_runs_again_later_without_using_up_an_attempt() throws SQLException {
        long id = enqueue(Spec.of("poll").maxAttempts(1));
        Claimed first = claimOne(WORKER);

        assertThat(api.snooze(c, id, first.attempt(), Duration.ofHours(1))).isTrue();

        assertThat(Sql.state(c, id)).isEqualTo("queued");
        assertThat(Sql.value(c, "SELECT run_at - now() BETWEEN interval '59 minutes' AND interval '1 hour' "
                + "FROM tasktable.task WHERE id = ?", id)).isEqualTo(true);
        makeDue(id);
        Claimed second = claimOne(WORKER);
        assertThat(second.attempt()).isEqualTo(2);
        assertThat(api.fail(c, id, second.attempt(), "boom", true, null))
                .as("the one real attempt allowed is now used").isEqualTo("dead");
    }

    @Test
    void a_cancelled_queued_task_never_runs() throws SQLException {
        long id = enqueue(Spec.of("report"));

        assertThat(api.cancel(c, id)).isEqualTo("cancelled");

        assertThat(Sql.state(c, id)).isEqualTo("cancelled");
        assertThat(api.claim(c, 10, WORKER, null, null)).isEmpty();
        assertThat(api.cancel(c, id)).as("cancelling again is a no-op").isEqualTo("cancelled");
    }

    @Test
    void cancelling_a_running_task_refuses_its_later_completion() throws SQLException {
        long id = enqueue(Spec.of("report"));
        Claimed claimed = claimOne(WORKER);

        assertThat(api.cancel(c, id)).isEqualTo("cancelled");

        assertThat(api.complete(c, id, claimed.attempt(), null)).isFalse();
        assertThat(api.fail(c, id, claimed.attempt(), "late", true, null)).isNull();
        assertThat(Sql.state(c, id)).isEqualTo("cancelled");
        assertThat(row(id)).containsEntry("lease_expires_at", null);
    }

    @Test
    void retrying_a_dead_task_gives_it_one_more_attempt() throws SQLException {
        long id = enqueue(Spec.of("webhook").maxAttempts(1));
        api.fail(c, id, claimOne(WORKER).attempt(), "boom", true, null);

        assertThat(api.retry(c, id)).isEqualTo("queued");

        assertThat(row(id)).containsEntry("finished_at", null).containsEntry("max_attempts", 2);
        Claimed again = claimOne(WORKER);
        assertThat(again.attempt()).isEqualTo(2);
        assertThat(api.complete(c, id, again.attempt(), null)).isTrue();
    }

    @Test
    void retrying_a_cancelled_task_queues_it_to_run_now() throws SQLException {
        long id = enqueue(Spec.of("report").runAt(OffsetDateTime.now().plusDays(1)));
        api.cancel(c, id);

        assertThat(api.retry(c, id)).isEqualTo("queued");

        assertThat(claimOne(WORKER).id()).isEqualTo(id);
    }

    @Test
    void finished_tasks_cannot_be_cancelled_and_live_ones_cannot_be_retried() throws SQLException {
        long succeeded = enqueue(Spec.of("a"));
        api.complete(c, succeeded, claimOne(WORKER).attempt(), null);
        long dead = enqueue(Spec.of("b"));
        api.fail(c, dead, claimOne(WORKER).attempt(), "no", false, null);
        long running = enqueue(Spec.of("c"));
        claimOne(WORKER);
        long queued = enqueue(Spec.of("d"));

        assertSqlState("TT011", () -> api.cancel(c, succeeded));
        assertSqlState("TT011", () -> api.cancel(c, dead));
        assertSqlState("TT011", () -> api.retry(c, succeeded));
        assertSqlState("TT011", () -> api.retry(c, running));
        assertSqlState("TT011", () -> api.retry(c, queued));
        assertSqlState("TT010", () -> api.cancel(c, 999_999));
        assertSqlState("TT010", () -> api.retry(c, 999_999));
        assertThat(List.of(Sql.state(c, succeeded), Sql.state(c, dead), Sql.state(c, running), Sql.state(c, queued)))
                .containsExactly("succeeded", "dead", "running", "queued");
    }

    // --- ordering, scheduling, queues --------------------------------------------------------------

    @Test
    void higher_priority_runs_first_then_older_run_at_then_lower_id() throws SQLException {
        OffsetDateTime now = OffsetDateTime.now();
        long older = enqueue(Spec.of("a").runAt(now.minusMinutes(10)));
        long urgent = enqueue(Spec.of("b").priority(5));
        long oldest = enqueue(Spec.of("c").runAt(now.minusMinutes(20)));
        long olderTwin = enqueue(Spec.of("d").runAt(now.minusMinutes(10)));
        long lowest = enqueue(Spec.of("e").priority(-5).runAt(now.minusHours(1)));

        List<Long> order = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            order.add(claimOne(WORKER).id());
        }

        assertThat(order).containsExactly(urgent, oldest, older, olderTwin, lowest);
    }

    @Test
    void a_future_task_is_not_claimed_until_it_is_due() throws SQLException {
        long id = enqueue(Spec.of("reminder").runAt(OffsetDateTime.now().plusHours(1)));

        assertThat(api.claim(c, 10, WORKER, null, null)).isEmpty();

        makeDue(id);
        assertThat(claimOne(WORKER).id()).isEqualTo(id);
    }

    @Test
    void a_paused_queue_is_skipped_until_resumed() throws SQLException {
        createQueue("mail");
        long mail = enqueue(Spec.of("send").queue("mail"));
        long other = enqueue(Spec.of("report"));
        Sql.update(c, "UPDATE tasktable.queue SET paused = true WHERE name = 'mail'");

        assertThat(api.claim(c, 10, WORKER, null, null)).extracting(Claimed::id).containsExactly(other);

        Sql.update(c, "UPDATE tasktable.queue SET paused = false WHERE name = 'mail'");
        assertThat(api.claim(c, 10, WORKER, null, null)).extracting(Claimed::id).containsExactly(mail);
    }

    @Test
    void a_worker_claims_only_from_the_queues_it_names() throws SQLException {
        createQueue("mail");
        createQueue("reports");
        long mail = enqueue(Spec.of("send").queue("mail"));
        enqueue(Spec.of("build").queue("reports"));
        enqueue(Spec.of("other"));

        List<Claimed> claimed = api.claim(c, 10, WORKER, List.of("mail"), null);

        assertThat(claimed).extracting(Claimed::id).containsExactly(mail);
        assertThat(claimed.getFirst().queue()).isEqualTo("mail");
    }

    @Test
    void the_lease_can_be_chosen_per_claim() throws SQLException {
        long id = enqueue(Spec.of("long_job"));

        api.claim(c, 1, WORKER, null, Duration.ofMinutes(5));

        assertThat(Sql.value(c, "SELECT lease_expires_at - started_at FROM tasktable.task WHERE id = ?", id))
                .hasToString("5 mins");
    }

    // --- backoff ------------------------------------------------------------------------------------

    @Test
    void backoff_stays_within_the_queue_policy_for_every_attempt_then_the_task_goes_dead() throws SQLException {
        createQueue("flaky");
        Sql.update(c, "UPDATE tasktable.queue SET backoff_base = '2 seconds', backoff_factor = 3, "
                + "backoff_cap = '60 seconds', backoff_jitter = 0.5, max_attempts = 6 WHERE name = 'flaky'");
        long id = enqueue(Spec.of("call").queue("flaky"));

        for (int attempt = 1; attempt <= 6; attempt++) {
            makeDue(id);
            Claimed claimed = claimOne(WORKER);
            assertThat(claimed.attempt()).isEqualTo(attempt);

            c.setAutoCommit(false);
            String state = api.fail(c, id, attempt, "attempt " + attempt, true, null);
            double delay = ((Number) Sql.value(c,
                    "SELECT extract(epoch FROM run_at - now()) FROM tasktable.task WHERE id = ?", id)).doubleValue();
            c.commit();
            c.setAutoCommit(true);

            if (attempt < 6) {
                double full = Math.min(60, 2 * Math.pow(3, attempt - 1));
                assertThat(state).isEqualTo("queued");
                assertThat(delay).as("delay after attempt %d", attempt).isBetween(full * 0.5 - 1e-3, full + 1e-3);
            } else {
                assertThat(state).isEqualTo("dead");
            }
        }
        assertThat(row(id)).containsEntry("last_error", "attempt 6");
    }

    @Test
    void without_jitter_the_backoff_is_exactly_base_times_factor_to_the_attempt_capped() throws SQLException {
        Sql.update(c, "UPDATE tasktable.queue SET backoff_base = '1 second', backoff_factor = 2, "
                + "backoff_cap = '10 seconds', backoff_jitter = 0 WHERE name = 'default'");

        List<Object> delays = new ArrayList<>();
        for (int attempt = 1; attempt <= 6; attempt++) {
            delays.add(Sql.value(c, "SELECT extract(epoch FROM tasktable.retry_delay('default', ?))::int", attempt));
        }

        assertThat(delays).containsExactly(1, 2, 4, 8, 10, 10);
    }

    // --- dedup --------------------------------------------------------------------------------------

    @Test
    void a_live_task_with_the_same_dedup_key_is_returned_instead_of_a_new_one() throws SQLException {
        createQueue("other");
        long first = enqueue(Spec.of("sync").dedupKey("user-42"));

        assertThat(enqueue(Spec.of("sync").dedupKey("user-42"))).as("while queued").isEqualTo(first);
        claimOne(WORKER);
        assertThat(enqueue(Spec.of("sync").dedupKey("user-42"))).as("while running").isEqualTo(first);
        assertThat(enqueue(Spec.of("sync").dedupKey("user-42").queue("other"))).as("other queue").isNotEqualTo(first);
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE queue = 'default'")).isEqualTo(1);
    }

    @Test
    void a_finished_task_does_not_block_a_new_one_with_its_dedup_key() throws SQLException {
        long first = enqueue(Spec.of("sync").dedupKey("user-42"));
        api.complete(c, first, claimOne(WORKER).attempt(), null);

        long second = enqueue(Spec.of("sync").dedupKey("user-42"));

        assertThat(second).isNotEqualTo(first);
        assertThat(Sql.state(c, second)).isEqualTo("queued");
    }

    @Test
    void duplicate_keys_within_one_batch_share_one_task() throws SQLException {
        List<Long> ids = api.enqueueAll(c, List.of(
                Spec.of("sync").dedupKey("k"), Spec.of("other"), Spec.of("sync").dedupKey("k")));

        assertThat(ids).hasSize(3);
        assertThat(ids.get(2)).isEqualTo(ids.get(0));
        assertThat(ids.get(1)).isNotEqualTo(ids.get(0));
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task")).isEqualTo(2);
    }

    @Test
    void a_batch_enqueue_returns_the_ids_in_input_order() throws SQLException {
        List<Spec> specs = IntStream.range(0, 50)
                .mapToObj(i -> Spec.of("n").payload("{\"n\": " + i + "}").priority(i % 3))
                .toList();

        List<Long> ids = api.enqueueAll(c, specs);

        assertThat(ids).doesNotHaveDuplicates().hasSize(50);
        for (int i = 0; i < ids.size(); i++) {
            assertThat(row(ids.get(i)).get("payload")).hasToString("{\"n\": " + i + "}");
        }
    }

    // --- fencing, leases, rescue ---------------------------------------------------------------------

    @Test
    void a_stale_attempt_cannot_complete_fail_extend_or_snooze() throws SQLException {
        long id = enqueue(Spec.of("job"));
        Claimed stale = claimOne(WORKER);
        expireLease(id);
        api.rescueExpired(c);
        makeDue(id);
        Claimed current = claimOne(OTHER_WORKER);
        Map<String, Object> before = row(id);

        assertThat(api.complete(c, id, stale.attempt(), null)).isFalse();
        assertThat(api.fail(c, id, stale.attempt(), "late", true, null)).isNull();
        assertThat(api.extendLease(c, new long[] {id}, new int[] {stale.attempt()}, null)).isEmpty();
        assertThat(api.snooze(c, id, stale.attempt(), Duration.ofMinutes(1))).isFalse();
        assertThat(api.completeAll(c, new long[] {id}, new int[] {stale.attempt()})).isEmpty();

        assertThat(row(id)).isEqualTo(before);
        assertThat(api.complete(c, id, current.attempt(), null)).isTrue();
    }

    @Test
    void an_expired_lease_is_rescued_and_its_old_holder_is_refused() throws SQLException {
        long id = enqueue(Spec.of("job"));
        Claimed first = claimOne(WORKER);
        expireLease(id);

        assertThat(api.rescueExpired(c)).isEqualTo(1);

        Map<String, Object> task = row(id);
        assertThat(task.get("state")).hasToString("queued");
        assertThat((String) task.get("last_error")).startsWith("lease expired");
        makeDue(id);
        Claimed second = claimOne(OTHER_WORKER);
        assertThat(second.attempt()).isEqualTo(2);
        assertThat(api.complete(c, id, first.attempt(), null)).as("old holder").isFalse();
        assertThat(api.complete(c, id, second.attempt(), null)).as("new holder").isTrue();
    }

    @Test
    void a_live_lease_is_not_rescued() throws SQLException {
        long id = enqueue(Spec.of("job"));
        claimOne(WORKER);

        assertThat(api.rescueExpired(c)).isZero();
        assertThat(Sql.state(c, id)).isEqualTo("running");
    }

    @Test
    void a_rescued_task_on_its_last_attempt_goes_dead() throws SQLException {
        long id = enqueue(Spec.of("job").maxAttempts(1));
        claimOne(WORKER);
        expireLease(id);

        assertThat(api.rescueExpired(c)).isEqualTo(1);
        assertThat(Sql.state(c, id)).isEqualTo("dead");
    }

    @Test
    void a_heartbeat_extends_the_lease() throws SQLException {
        long id = enqueue(Spec.of("job"));
        api.claim(c, 1, WORKER, null, Duration.ofSeconds(5));

        assertThat(api.extendLease(c, new long[] {id}, new int[] {1}, Duration.ofHours(1))).containsExactly(id);

        assertThat(Sql.value(c, "SELECT lease_expires_at - now() > interval '59 minutes' FROM tasktable.task WHERE id = ?", id))
                .isEqualTo(true);
        expireLease(id);
        assertThat(api.extendLease(c, new long[] {id}, new int[] {1}, null))
                .as("an expired but not yet rescued lease can still be renewed by its holder").containsExactly(id);
        assertThat(api.rescueExpired(c)).isZero();
    }

    // --- transactions -------------------------------------------------------------------------------

    @Test
    void a_task_enqueued_in_a_rolled_back_transaction_never_exists_nor_notifies() throws SQLException {
        try (Connection listener = db.connect()) {
            try (Statement s = listener.createStatement()) {
                s.execute("LISTEN tasktable");
            }
            c.setAutoCommit(false);
            long rolledBack = enqueue(Spec.of("ghost"));
            c.rollback();
            long committed = enqueue(Spec.of("real"));
            c.commit();
            c.setAutoCommit(true);

            assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE id = ?", rolledBack)).isZero();
            assertThat(Sql.state(c, committed)).isEqualTo("queued");
            PGConnection pg = listener.unwrap(PGConnection.class);
            PGNotification[] first = pg.getNotifications(10_000);
            assertThat(first).extracting(PGNotification::getParameter).containsExactly("default");
            assertThat(pg.getNotifications()).as("nothing from the rolled-back enqueue").isEmpty();
        }
    }

    @Test
    void prune_deletes_finished_tasks_past_their_retention_only() throws SQLException {
        long oldSucceeded = enqueue(Spec.of("a"));
        long newSucceeded = enqueue(Spec.of("b"));
        long deadWithinRetention = enqueue(Spec.of("c"));
        long deadPastRetention = enqueue(Spec.of("d"));
        long queued = enqueue(Spec.of("e"));
        for (long id : new long[] {oldSucceeded, newSucceeded}) {
            Claimed claimed = claimOne(WORKER);
            api.complete(c, claimed.id(), claimed.attempt(), null);
        }
        for (long id : new long[] {deadWithinRetention, deadPastRetention}) {
            Claimed claimed = claimOne(WORKER);
            api.fail(c, claimed.id(), claimed.attempt(), "no", false, null);
        }
        Sql.update(c, "UPDATE tasktable.finished_task SET finished_at = now() - interval '8 days' WHERE id IN (?, ?)",
                oldSucceeded, deadWithinRetention);
        Sql.update(c, "UPDATE tasktable.finished_task SET finished_at = now() - interval '31 days' WHERE id = ?", deadPastRetention);

        assertThat(api.prune(c, 1000)).isEqualTo(2);

        assertThat(Sql.rows(c, "SELECT id FROM tasktable.task ORDER BY id")).extracting(r -> (Long) r.get("id"))
                .containsExactly(newSucceeded, deadWithinRetention, queued);
    }

    // --- concurrency --------------------------------------------------------------------------------

    @Test
    void eight_workers_on_eight_connections_complete_twenty_thousand_tasks_exactly_once() throws Exception {
        int total = 20_000;
        Set<Long> enqueued = new HashSet<>();
        for (int batch = 0; batch < total / 1000; batch++) {
            enqueued.addAll(api.enqueueAll(c, IntStream.range(0, 1000).mapToObj(i -> Spec.of("noop")).toList()));
        }
        ConcurrentLinkedQueue<Long> completed = new ConcurrentLinkedQueue<>();

        try (ExecutorService pool = Executors.newFixedThreadPool(8)) {
            List<Future<?>> workers = new ArrayList<>();
            for (int w = 0; w < 8; w++) {
                String name = "worker-" + w;
                workers.add(pool.submit(() -> {
                    try (Connection own = db.connect()) {
                        List<Claimed> batch;
                        while (!(batch = api.claim(own, 50, name, null, null)).isEmpty()) {
                            long[] ids = batch.stream().mapToLong(Claimed::id).toArray();
                            int[] attempts = batch.stream().mapToInt(Claimed::attempt).toArray();
                            completed.addAll(api.completeAll(own, ids, attempts));
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> worker : workers) {
                worker.get();
            }
        }

        assertThat(enqueued).hasSize(total);
        assertThat(completed).hasSize(total).doesNotHaveDuplicates();
        assertThat(new HashSet<>(completed)).isEqualTo(enqueued);
        assertThat(Sql.count(c, "SELECT count(*) FROM tasktable.task WHERE state = 'succeeded' AND attempt = 1"))
                .as("each task claimed once").isEqualTo(total);
        assertThat(Sql.count(c, "SELECT count(DISTINCT worker) FROM tasktable.task")).as("work was shared").isGreaterThan(1);
    }
}
