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

    /**
     * enqueue_tasks' call with its specs built from one array per field, in the order of task_spec's fields; the
     * run_at and payload texts are cast on the server, as enqueue_task's are.
     */
    static final String ENQUEUE_ALL_SQL = """
            SELECT tasktable.enqueue_tasks(ARRAY(
                SELECT ROW(s.kind, s.payload::jsonb, s.queue, s.run_at::timestamptz, s.priority, s.max_attempts,
                           s.dedup_key)::tasktable.task_spec
                FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::int[], ?::int[], ?::text[]) WITH ORDINALITY
                     AS s (kind, payload, queue, run_at, priority, max_attempts, dedup_key, ord)
                ORDER BY s.ord))""";

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
        return tx.connectionResult(c -> enqueueAll(c, tasks));
    }

    /**
     * Enqueues many tasks in one statement in the caller's JDBC transaction; ids in input order.
     *
     * <p>The specs travel as one array per field, which the driver encodes ({@link Connection#createArrayOf}), and
     * become {@code task_spec} rows on the server ({@link #ENQUEUE_ALL_SQL}). jOOQ's binding of a {@code task_spec[]}
     * writes the array's text through its own string escaping: 42% of the client's CPU samples in bench enqueue of
     * 1,000 per call, with the client a fifth of the machine's CPU, shared with the database (docs/performance.md,
     * item 35). The server's side costs the same either way (pgbench, both forms alternating).
     */
    public static List<Long> enqueueAll(Connection tx, List<NewTask> tasks) {
        int n = tasks.size();
        String[] kinds = new String[n], payloads = new String[n], queues = new String[n], runAts = new String[n],
                dedupKeys = new String[n];
        Integer[] priorities = new Integer[n], maxAttempts = new Integer[n];
        for (int i = 0; i < n; i++) {
            TaskSpecRecord s = spec(tasks.get(i)); // the one conversion of a NewTask, as enqueue binds it
            kinds[i] = s.getKind();
            payloads[i] = s.getPayload().data();
            queues[i] = s.getQueue();
            runAts[i] = s.getRunAt() == null ? null : s.getRunAt().toString();
            priorities[i] = s.getPriority();
            maxAttempts[i] = s.getMaxAttempts();
            dedupKeys[i] = s.getDedupKey();
        }
        try (PreparedStatement call = tx.prepareStatement(ENQUEUE_ALL_SQL)) {
            call.setArray(1, tx.createArrayOf("text", kinds));
            call.setArray(2, tx.createArrayOf("text", payloads));
            call.setArray(3, tx.createArrayOf("text", queues));
            call.setArray(4, tx.createArrayOf("text", runAts));
            call.setArray(5, tx.createArrayOf("int4", priorities));
            call.setArray(6, tx.createArrayOf("int4", maxAttempts));
            call.setArray(7, tx.createArrayOf("text", dedupKeys));
            try (ResultSet ids = call.executeQuery()) {
                ids.next();
                return Arrays.asList((Long[]) ids.getArray(1).getArray());
            }
        } catch (SQLException e) {
            throw new DataAccessException("enqueue_tasks: " + e.getMessage(), e);
        }
    }

    private static TaskSpecRecord spec(NewTask task) {
        return new TaskSpecRecord(task.kind(), JSONB.valueOf(task.payloadJson()), task.queue(),
                task.runAt().map(at -> at.atOffset(ZoneOffset.UTC)).orElse(null), task.priority(),
                task.maxAttempts().isPresent() ? task.maxAttempts().getAsInt() : null, task.dedupKey().orElse(null));
    }
}
