package io.tasktable;

import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.List;

/**
 * The SQL API as the tests drive it, implemented twice: through the jOOQ bindings ({@link JooqQueueApi})
 * and through plain JDBC statements ({@link JdbcQueueApi}), to prove a caller without jOOQ gets the
 * same behaviour. Every call runs on the given connection, in its current transaction.
 */
interface QueueApi {

    /** One task for enqueue; null fields take the SQL defaults. */
    record Spec(String kind, String payload, String queue, OffsetDateTime runAt, Integer priority,
                Integer maxAttempts, String dedupKey) {

        static Spec of(String kind) {
            return new Spec(kind, "{}", null, null, null, null, null);
        }

        Spec queue(String q) {
            return new Spec(kind, payload, q, runAt, priority, maxAttempts, dedupKey);
        }

        Spec payload(String json) {
            return new Spec(kind, json, queue, runAt, priority, maxAttempts, dedupKey);
        }

        Spec runAt(OffsetDateTime at) {
            return new Spec(kind, payload, queue, at, priority, maxAttempts, dedupKey);
        }

        Spec priority(int p) {
            return new Spec(kind, payload, queue, runAt, p, maxAttempts, dedupKey);
        }

        Spec maxAttempts(int m) {
            return new Spec(kind, payload, queue, runAt, priority, m, dedupKey);
        }

        Spec dedupKey(String k) {
            return new Spec(kind, payload, queue, runAt, priority, maxAttempts, k);
        }
    }

    /** What a worker gets from claim_tasks. */
    record Claimed(long id, String kind, String payload, String queue, int attempt, int priority) {
    }

    long enqueue(Connection c, Spec spec) throws SQLException;

    List<Long> enqueueAll(Connection c, List<Spec> specs) throws SQLException;

    List<Claimed> claim(Connection c, int n, String worker, List<String> queues, Duration lease) throws SQLException;

    boolean complete(Connection c, long id, int attempt, String resultJson) throws SQLException;

    List<Long> completeAll(Connection c, long[] ids, int[] attempts) throws SQLException;

    /** The new state, or null when the caller no longer held the task. */
    String fail(Connection c, long id, int attempt, String error, boolean retryable, OffsetDateTime retryAt)
            throws SQLException;

    List<Long> extendLease(Connection c, long[] ids, int[] attempts, Duration by) throws SQLException;

    boolean snooze(Connection c, long id, int attempt, Duration delay) throws SQLException;

    String cancel(Connection c, long id) throws SQLException;

    String retry(Connection c, long id) throws SQLException;

    int rescueExpired(Connection c) throws SQLException;

    int prune(Connection c, int maxRows) throws SQLException;
}
