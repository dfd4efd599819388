package io.tasktable;

import java.sql.Connection;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.Arrays;
import java.util.List;

import org.jooq.DSLContext;
import org.jooq.JSONB;
import org.jooq.SQLDialect;
import org.jooq.impl.DSL;
import org.jooq.types.YearToSecond;

import io.tasktable.db.Routines;
import io.tasktable.db.enums.TaskState;
import io.tasktable.db.tables.records.TaskRecord;
import io.tasktable.db.udt.records.TaskSpecRecord;

/** The SQL API through the generated jOOQ bindings. */
final class JooqQueueApi implements QueueApi {

    private static DSLContext db(Connection c) {
        return DSL.using(c, SQLDialect.POSTGRES);
    }

    private static JSONB json(String s) {
        return s == null ? null : JSONB.valueOf(s);
    }

    private static YearToSecond interval(Duration d) {
        return d == null ? null : YearToSecond.valueOf(d);
    }

    private static Long[] boxed(long[] ids) {
        return Arrays.stream(ids).boxed().toArray(Long[]::new);
    }

    private static Integer[] boxed(int[] attempts) {
        return Arrays.stream(attempts).boxed().toArray(Integer[]::new);
    }

    @Override
    public long enqueue(Connection c, Spec s) {
        return Routines.enqueueTask(db(c).configuration(), s.kind(), json(s.payload()), s.queue(), s.runAt(),
                s.priority(), s.maxAttempts(), s.dedupKey());
    }

    @Override
    public List<Long> enqueueAll(Connection c, List<Spec> specs) {
        TaskSpecRecord[] records = specs.stream()
                .map(s -> new TaskSpecRecord(s.kind(), json(s.payload()), s.queue(), s.runAt(), s.priority(),
                        s.maxAttempts(), s.dedupKey()))
                .toArray(TaskSpecRecord[]::new);
        return Arrays.asList(Routines.enqueueTasks(db(c).configuration(), records));
    }

    @Override
    public List<Claimed> claim(Connection c, int n, String worker, List<String> queues, Duration lease) {
        return db(c).selectFrom(Routines.claimTasks(n, worker, queues == null ? null : queues.toArray(String[]::new),
                        interval(lease)))
                .fetch()
                .map(JooqQueueApi::claimed);
    }

    private static Claimed claimed(TaskRecord r) {
        return new Claimed(r.getId(), r.getKind(), r.getPayload().data(), r.getQueue(), r.getAttempt(), r.getPriority());
    }

    @Override
    public boolean complete(Connection c, long id, int attempt, String resultJson) {
        return Routines.completeTask(db(c).configuration(), id, attempt, json(resultJson));
    }

    @Override
    public List<Long> completeAll(Connection c, long[] ids, int[] attempts) {
        return Arrays.asList(Routines.completeTasks(db(c).configuration(), boxed(ids), boxed(attempts), null));
    }

    @Override
    public String fail(Connection c, long id, int attempt, String error, boolean retryable, OffsetDateTime retryAt) {
        TaskState state = Routines.failTask(db(c).configuration(), id, attempt, error, retryable, retryAt);
        return state == null ? null : state.getLiteral();
    }

    @Override
    public List<Long> extendLease(Connection c, long[] ids, int[] attempts, Duration by) {
        return Arrays.asList(Routines.extendLease(db(c).configuration(), boxed(ids), boxed(attempts), interval(by)));
    }

    @Override
    public boolean snooze(Connection c, long id, int attempt, Duration delay) {
        return Routines.snoozeTask(db(c).configuration(), id, attempt, interval(delay));
    }

    @Override
    public String cancel(Connection c, long id) {
        return Routines.cancelTask(db(c).configuration(), id).getLiteral();
    }

    @Override
    public String retry(Connection c, long id) {
        return Routines.retryTask(db(c).configuration(), id).getLiteral();
    }

    @Override
    public int rescueExpired(Connection c) {
        return Routines.rescueExpiredTasks(db(c).configuration(), 10_000);
    }

    @Override
    public int prune(Connection c, int maxRows) {
        return Routines.pruneTasks(db(c).configuration(), maxRows);
    }
}
