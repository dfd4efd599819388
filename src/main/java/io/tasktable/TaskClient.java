package io.tasktable;

import java.sql.Connection;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.List;

import javax.sql.DataSource;

import org.jooq.DSLContext;
import org.jooq.JSONB;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;

import io.tasktable.db.Routines;
import io.tasktable.db.udt.records.TaskSpecRecord;

/**
 * Enqueues tasks through {@code tasktable.enqueue_task(s)}.
 *
 * <p>Pass the transaction your business write runs in ({@link DSLContext} or JDBC {@link Connection}): the
 * task then exists if and only if that transaction commits (a transactional outbox). The overloads without
 * a transaction run in their own.
 */
public final class TaskClient {

    private final DSLContext db;

    public TaskClient(DataSource dataSource) {
        this.db = DSL.using(dataSource, SQLDialect.POSTGRES);
    }

    /** Enqueues in its own transaction; returns the task id. */
    public long enqueue(NewTask task) {
        return enqueue(db, task);
    }

    /** Enqueues in the caller's transaction; returns the task id (or the live duplicate's, see dedup key). */
    public static long enqueue(DSLContext tx, NewTask task) {
        TaskSpecRecord s = spec(task);
        return Routines.enqueueTask(tx.configuration(), s.getKind(), s.getPayload(), s.getQueue(), s.getRunAt(),
                s.getPriority(), s.getMaxAttempts(), s.getDedupKey());
    }

    /** Enqueues in the caller's JDBC transaction. */
    public static long enqueue(Connection tx, NewTask task) {
        return enqueue(DSL.using(tx, SQLDialect.POSTGRES), task);
    }

    /** Enqueues many tasks in one statement in its own transaction; ids in input order. */
    public List<Long> enqueueAll(List<NewTask> tasks) {
        return enqueueAll(db, tasks);
    }

    /** Enqueues many tasks in one statement in the caller's transaction; ids in input order. */
    public static List<Long> enqueueAll(DSLContext tx, List<NewTask> tasks) {
        TaskSpecRecord[] specs = tasks.stream().map(TaskClient::spec).toArray(TaskSpecRecord[]::new);
        return Arrays.asList(Routines.enqueueTasks(tx.configuration(), specs));
    }

    /** Enqueues many tasks in one statement in the caller's JDBC transaction. */
    public static List<Long> enqueueAll(Connection tx, List<NewTask> tasks) {
        return enqueueAll(DSL.using(tx, SQLDialect.POSTGRES), tasks);
    }

    private static TaskSpecRecord spec(NewTask task) {
        return new TaskSpecRecord(task.kind(), JSONB.valueOf(task.payloadJson()), task.queue(),
                task.runAt().map(at -> at.atOffset(ZoneOffset.UTC)).orElse(null), task.priority(),
                task.maxAttempts().isPresent() ? task.maxAttempts().getAsInt() : null, task.dedupKey().orElse(null));
    }
}
