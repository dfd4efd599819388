package io.tasktable;

import java.time.Instant;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A task to enqueue. Start from {@link #of(String, String)} and set only what differs from the defaults:
 * queue {@code default}, run now, priority 0, the queue's max_attempts, no dedup key.
 *
 * @param kind        names the handler that runs it, e.g. {@code send_email}
 * @param payloadJson a JSON object or array, passed to the handler
 * @param queue       the queue (it must exist in {@code tasktable.queue})
 * @param runAt       not before this instant (empty: now, by the database clock)
 * @param priority    higher runs first, -1000..1000
 * @param maxAttempts attempts before it goes dead (empty: the queue's policy)
 * @param dedupKey    at most one queued or running task per (queue, dedup key)
 */
public record NewTask(String kind, String payloadJson, String queue, Optional<Instant> runAt, int priority,
                      OptionalInt maxAttempts, Optional<String> dedupKey) {

    /** The queue every database has from the first migration on. */
    public static final String DEFAULT_QUEUE = "default";

    public NewTask {
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(payloadJson, "payloadJson");
        Objects.requireNonNull(queue, "queue");
        Objects.requireNonNull(runAt, "runAt");
        Objects.requireNonNull(maxAttempts, "maxAttempts");
        Objects.requireNonNull(dedupKey, "dedupKey");
    }

    public static NewTask of(String kind, String payloadJson) {
        return new NewTask(kind, payloadJson, DEFAULT_QUEUE, Optional.empty(), 0, OptionalInt.empty(), Optional.empty());
    }

    public NewTask inQueue(String otherQueue) {
        return new NewTask(kind, payloadJson, otherQueue, runAt, priority, maxAttempts, dedupKey);
    }

    public NewTask runAt(Instant instant) {
        return new NewTask(kind, payloadJson, queue, Optional.of(instant), priority, maxAttempts, dedupKey);
    }

    public NewTask withPriority(int newPriority) {
        return new NewTask(kind, payloadJson, queue, runAt, newPriority, maxAttempts, dedupKey);
    }

    public NewTask withMaxAttempts(int attempts) {
        return new NewTask(kind, payloadJson, queue, runAt, priority, OptionalInt.of(attempts), dedupKey);
    }

    public NewTask withDedupKey(String key) {
        return new NewTask(kind, payloadJson, queue, runAt, priority, maxAttempts, Optional.of(key));
    }
}
