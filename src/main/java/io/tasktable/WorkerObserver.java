package io.tasktable;

import java.time.Duration;

/**
 * What a {@link Worker} reports as it works, for metrics. Called on the worker's own threads: implementations
 * must be fast, thread-safe and must not throw.
 */
public interface WorkerObserver {

    /** Observes nothing. */
    WorkerObserver NONE = new WorkerObserver() {
    };

    /** A claim returned this many tasks. */
    default void claimed(int tasks) {
    }

    /** A handler is about to run, this long after the task became due (its run_at). */
    default void started(ClaimedTask task, Duration sinceDue) {
    }

    /** A handler returned or threw after running this long. */
    default void ran(ClaimedTask task, Duration duration) {
    }

    /** The database accepted this many completions. */
    default void completed(int tasks) {
    }

    /** The database recorded this many failed attempts (retried later or dead). */
    default void failed(int tasks) {
    }

    /** This worker's maintenance rescued this many tasks whose lease had expired. */
    default void rescued(int tasks) {
    }
}
