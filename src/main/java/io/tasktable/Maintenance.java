package io.tasktable;

import java.time.Duration;

import org.jooq.Condition;
import org.jooq.DSLContext;
import org.jooq.Field;
import org.jooq.impl.DSL;
import org.jooq.impl.SQLDataType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.tasktable.db.Routines;

/**
 * The periodic jobs every worker runs and only one at a time does: rescuing tasks whose lease expired and
 * pruning finished ones. Each run takes a transaction-scoped advisory lock with try (never waits); a worker
 * that does not get it skips this round, since another is doing the job right now. Lock and job are one
 * statement in its own transaction, so the server finishes and commits it whatever the worker does meanwhile:
 * a worker frozen (SIGSTOP, a long GC pause, a stalled VM) cannot sit on the lock in an idle transaction and
 * stop every other worker's rescue.
 */
final class Maintenance {

    private static final Logger LOG = LoggerFactory.getLogger(Maintenance.class);

    /** Advisory lock keys: "tt" + "rescue"/"prune" in ASCII, unlikely to collide with an application's keys. */
    static final long RESCUE_LOCK = 0x7474_7265_7363_7565L;
    static final long PRUNE_LOCK = 0x7474_7072_756e_6500L;
    /** The SQL default: bounds one call's transaction; a larger backlog is taken over the next rounds. */
    static final int MAX_ROWS = 10_000;

    private final DSLContext db;
    private final WorkerOptions options;
    private final WorkerObserver observer;
    private final Thread thread;
    private final Object stop = new Object();
    private volatile boolean closing;

    Maintenance(DSLContext db, WorkerOptions options, String workerId, WorkerObserver observer) {
        this.observer = observer;
        this.db = db;
        this.options = options;
        this.thread = Thread.ofPlatform().daemon().name("tasktable-maintenance-" + workerId).unstarted(this::loop);
    }

    void start() {
        thread.start();
    }

    void close() throws InterruptedException {
        closing = true;
        synchronized (stop) {
            stop.notifyAll();
        }
        thread.join();
    }

    private void loop() {
        long nextRescue = System.nanoTime();
        long nextPrune = System.nanoTime();
        try {
            while (!closing) {
                long now = System.nanoTime();
                try {
                    if (now - nextRescue >= 0) {
                        nextRescue = now + options.rescueInterval().toNanos();
                        int rescued = runExclusively(RESCUE_LOCK, Routines.rescueExpiredTasks(DSL.val(MAX_ROWS)), "rescue");
                        if (rescued > 0) {
                            observer.rescued(rescued);
                            LOG.info("rescued {} task(s) whose lease expired", rescued);
                        }
                    }
                    if (now - nextPrune >= 0) {
                        nextPrune = now + options.pruneInterval().toNanos();
                        int pruned = runExclusively(PRUNE_LOCK, Routines.pruneTasks(DSL.val(MAX_ROWS)), "prune");
                        if (pruned > 0) {
                            LOG.info("pruned {} finished task(s) past retention", pruned);
                        }
                    }
                } catch (RuntimeException | OutOfMemoryError e) {
                    // e.g. a handler filled the heap: this round is lost, the next one comes at its time
                    Worker.survive("maintenance broke off; next round at its interval", e);
                }
                long sleep = Math.min(nextRescue, nextPrune) - System.nanoTime();
                synchronized (stop) {
                    if (!closing && sleep > 0) {
                        stop.wait(Math.max(1, sleep / 1_000_000));
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Runs the job if this worker gets the lock; 0 when another worker holds it or the database failed. */
    private int runExclusively(long lock, Field<Integer> job, String name) {
        // CASE runs the (volatile) job only when the lock was granted; both in one autocommit statement.
        Condition mine = DSL.condition(DSL.function("pg_try_advisory_xact_lock", SQLDataType.BOOLEAN, DSL.val(lock)));
        try {
            return db.select(DSL.when(mine, job).otherwise(DSL.inline(0))).fetchSingle().value1();
        } catch (RuntimeException | OutOfMemoryError e) {
            // The next round retries; a missed round only delays the job by one interval.
            LOG.warn("{} failed, retrying next round: {}", name, Retrying.summary(e));
            return 0;
        }
    }
}
