package io.tasktable;

import java.util.Objects;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * A task a worker claimed and hands to its {@link TaskHandler}.
 *
 * @param id      the task id, stable across attempts (a good idempotency key)
 * @param queue   the queue it came from
 * @param kind    selects the handler
 * @param payload the JSON object or array it was enqueued with
 * @param attempt 1 for the first run, 2 for the first retry, ...
 */
public record ClaimedTask(long id, String queue, String kind, JsonNode payload, int attempt) {

    public ClaimedTask {
        Objects.requireNonNull(queue, "queue");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(payload, "payload");
    }
}
