package io.tasktable;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.List;

import javax.sql.DataSource;

import org.jooq.DSLContext;
import org.jooq.JSONB;
import org.jooq.SQLDialect;
import org.jooq.exception.DataAccessException;
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

    /** enqueue_task's call as jOOQ renders it from the generated binding; the values are bound per call. */
    static final String ENQUEUE_SQL = DSL.using(SQLDialect.POSTGRES)
            .select(Routines.enqueueTask((String) null, null, null, null, null, null, null)).getSQL();

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
        return tx.connectionResult(c -> enqueue(c, task));
    }

    /**
     * Enqueues in the caller's JDBC transaction. The statement is the one jOOQ renders from the generated binding,
     * rendered once ({@link #ENQUEUE_SQL}), as the worker's claim and completion are: rendering the routine call on
     * every enqueue was two thirds of the client's CPU per call (JFR of bench enqueue, 8 threads), on the same cores
     * as the database in the bench (docs/performance.md, item 32).
     */
    public static long enqueue(Connection tx, NewTask task) {
        TaskSpecRecord s = spec(task);
        try (PreparedStatement call = tx.prepareStatement(ENQUEUE_SQL)) {
            call.setString(1, s.getKind());
            call.setString(2, s.getPayload().data());
            call.setString(3, s.getQueue());
            call.setObject(4, s.getRunAt(), Types.TIMESTAMP_WITH_TIMEZONE);
            call.setObject(5, s.getPriority(), Types.INTEGER);
            call.setObject(6, s.getMaxAttempts(), Types.INTEGER);
            call.setString(7, s.getDedupKey());
            try (ResultSet id = call.executeQuery()) {
                id.next();
                return id.getLong(1);
            }
        } catch (SQLException e) {
            throw new DataAccessException("enqueue_task: " + e.getMessage(), e);
        }
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
