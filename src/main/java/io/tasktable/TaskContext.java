package io.tasktable;

/** What a handler can ask the worker while it runs a task. */
public interface TaskContext {

    /** The worker running the task, as recorded in the task's {@code worker} column. */
    String workerId();

    /**
     * True once the worker will no longer report this attempt: it timed out, its lease was lost (the task
     * was rescued or cancelled), or the worker is shutting down and handed it back. The handler's thread is
     * interrupted at the same moment; a long handler that does not block should check this and return.
     */
    boolean stopRequested();
}
