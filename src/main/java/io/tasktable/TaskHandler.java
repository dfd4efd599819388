package io.tasktable;

/**
 * Runs the tasks of one kind. Register it with a {@link Worker} under that kind.
 *
 * <p>Delivery is at least once: a task whose worker dies is rescued and runs again, so a handler must be
 * idempotent (e.g. key its side effects on {@link ClaimedTask#id()}).
 */
@FunctionalInterface
public interface TaskHandler {

    /**
     * Does the work of one attempt.
     *
     * @return the outcome: usually {@link TaskResult#success()}; {@link TaskResult#snooze}, {@link TaskResult#retry}
     *         or {@link TaskResult#giveUp} to decide otherwise without throwing
     * @throws NonRetryableException to fail the task for good (it goes dead)
     * @throws Exception             any other exception fails this attempt; the queue's backoff policy retries it
     */
    TaskResult handle(ClaimedTask task, TaskContext context) throws Exception;
}
