package io.tasktable;

import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

import com.fasterxml.jackson.databind.JsonNode;

/** What a {@link TaskHandler} decided about its attempt. The worker maps each to one SQL function call. */
public sealed interface TaskResult {

    /** Done: {@code complete_tasks}, storing the result when present. */
    record Success(Optional<JsonNode> result) implements TaskResult {
        public Success {
            Objects.requireNonNull(result, "result");
        }
    }

    /** Not now: {@code snooze_task}; runs again after the delay without using up an attempt. */
    record Snooze(Duration delay) implements TaskResult {
        public Snooze {
            if (delay.isNegative()) {
                throw new IllegalArgumentException("snooze delay must be zero or more, got " + delay);
            }
        }
    }

    /**
     * Failed, try again: {@code fail_task} with retryable; after the given delay (measured by the database
     * clock) or, when empty, after the queue's backoff. Goes dead when the attempts are used up.
     */
    record Retry(String reason, Optional<Duration> delay) implements TaskResult {
        public Retry {
            Objects.requireNonNull(reason, "reason");
            delay.ifPresent(d -> {
                if (d.isNegative()) {
                    throw new IllegalArgumentException("retry delay must be zero or more, got " + d);
                }
            });
        }
    }

    /** Failed for good: {@code fail_task} not retryable, so the task goes dead with this reason. */
    record GiveUp(String reason) implements TaskResult {
        public GiveUp {
            Objects.requireNonNull(reason, "reason");
        }
    }

    static TaskResult success() {
        return new Success(Optional.empty());
    }

    static TaskResult success(JsonNode result) {
        return new Success(Optional.of(result));
    }

    static TaskResult snooze(Duration delay) {
        return new Snooze(delay);
    }

    static TaskResult retry(String reason) {
        return new Retry(reason, Optional.empty());
    }

    static TaskResult retryAfter(String reason, Duration delay) {
        return new Retry(reason, Optional.of(delay));
    }

    static TaskResult giveUp(String reason) {
        return new GiveUp(reason);
    }
}
