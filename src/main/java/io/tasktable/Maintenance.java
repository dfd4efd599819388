package io.tasktable;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;

import javax.sql.DataSource;

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
 *
 * <p>A worker that claims also vacuums {@code live_task} when it holds {@link WorkerOptions#vacuumThreshold()}
 * dead row versions, if its role may ({@link #MAY_VACUUM_SQL}). {@code SKIP_LOCKED}
 * makes a VACUUM already running (another worker's, or autovacuum's) a reason to skip the round, not to wait.
 * The jobs share one thread, so a long VACUUM delays this worker's next rescue round by as long (the other
 * workers' rounds are not delayed); {@link #close()} cancels it.
 */
final class Maintenance {

    private static final Logger LOG = LoggerFactory.getLogger(Maintenance.class);

    /** Advisory lock keys: "tt" + "rescue"/"prune" in ASCII, unlikely to collide with an application's keys. */
    static final long RESCUE_LOCK = 0x7474_7265_7363_7565L;
    static final long PRUNE_LOCK = 0x7474_7072_756e_6500L;
    /** The SQL default: bounds one call's transaction; a larger backlog is taken over the next rounds. */
    static final int MAX_ROWS = 10_000;
    /** How often a worker that claims reads live_task's dead row count (one row of pg_stat). */
    static final Duration VACUUM_CHECK_INTERVAL = Duration.ofSeconds(1);
    /**
     * How long after its last claim a worker keeps looking: a backend that goes idle sends its counts to pgstat up
     * to 10 s later (PGSTAT_IDLE_INTERVAL), so the dead versions of a burst's last claims show up after it.
     */
    static final Duration VACUUM_LOOK_AFTER_CLAIMS = Duration.ofSeconds(11);
    /**
     * One process, no truncation: a parallel VACUUM's helpers would take the cores the drain runs on, and
     * truncating the empty pages a drain leaves at the table's end takes an ACCESS EXCLUSIVE lock that claims and
     * enqueues would queue behind.
     */
    static final String VACUUM_SQL = "VACUUM (SKIP_LOCKED, TRUNCATE false, PARALLEL 0) tasktable.live_task";
    /**
     * Whether this role may VACUUM live_task: its owner's members, the database owner's, superusers (pg_has_role is
     * true for them) and, from PostgreSQL 17, roles with the MAINTAIN privilege on it (or pg_maintain). Otherwise
     * VACUUM would only warn and skip the table.
     */
    static final String MAY_VACUUM_SQL = "SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') "
            + "OR CASE WHEN current_setting('server_version_num')::int >= 170000 "
            + "THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END "
            + "FROM pg_class c, pg_database d WHERE c.oid = 'tasktable.live_task'::regclass AND d.datname = current_database()";
    static final String DEAD_ROWS_SQL = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'tasktable.live_task'::regclass";

    private final DSLContext db;
    private final DataSource dataSource;
    private final WorkerOptions options;
    private final WorkerObserver observer;
    private final Thread thread;
    private final Object stop = new Object();
    private volatile boolean closing;
    /** System.nanoTime() of the last claim that found tasks; looks stop VACUUM_LOOK_AFTER_CLAIMS later. */
    private volatile long lastClaim;
    private volatile boolean claimedOnce;
    /** Whether this worker's role may vacuum live_task: null until asked (once). */
    private Boolean mayVacuum;
    /** The VACUUM in flight, for {@link #close()} to cancel. */
    private volatile Statement vacuuming;

    Maintenance(DSLContext db, DataSource dataSource, WorkerOptions options, String workerId, WorkerObserver observer) {
        this.observer = observer;
        this.db = db;
        this.dataSource = dataSource;
        this.options = options;
        this.thread = Thread.ofPlatform().daemon().name("tasktable-maintenance-" + workerId).unstarted(this::loop);
    }

    void start() {
        thread.start();
    }

    /** The claim threads say when they claimed: an idle worker does not look at live_task's dead rows. */
    void claimed() {
        lastClaim = System.nanoTime();
        claimedOnce = true;
    }

    void close() throws InterruptedException {
        closing = true;
        Statement inFlight = vacuuming;
        if (inFlight != null) {
            try {
                inFlight.cancel(); // a VACUUM of a large table takes seconds: shutdown does not wait for it
            } catch (SQLException e) {
                LOG.debug("could not cancel the VACUUM in flight: {}", e.getMessage());
            }
        }
        synchronized (stop) {
            stop.notifyAll();
        }
        thread.join();
    }

    private void loop() {
        long nextRescue = System.nanoTime();
        long nextPrune = System.nanoTime();
        long nextVacuumLook = System.nanoTime() + VACUUM_CHECK_INTERVAL.toNanos();
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
                    if (options.vacuumThreshold() > 0 && now - nextVacuumLook >= 0) {
                        nextVacuumLook = now + VACUUM_CHECK_INTERVAL.toNanos();
                        vacuumIfDue();
                    }
                } catch (RuntimeException | OutOfMemoryError e) {
                    // e.g. a handler filled the heap: this round is lost, the next one comes at its time
                    Worker.survive("maintenance broke off; next round at its interval", e);
                }
                long next = Math.min(nextRescue, nextPrune);
                if (options.vacuumThreshold() > 0) {
                    next = Math.min(next, nextVacuumLook);
                }
                long sleep = next - System.nanoTime();
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

    /**
     * VACUUMs live_task if this worker claimed lately, its role may, and the table holds at least the threshold of
     * dead row versions (pgstat's count, which a busy backend sends at most once a second).
     */
    private void vacuumIfDue() {
        if (!claimedOnce || System.nanoTime() - lastClaim > VACUUM_LOOK_AFTER_CLAIMS.toNanos()
                || Boolean.FALSE.equals(mayVacuum)) {
            return;
        }
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement()) {
            if (mayVacuum == null) {
                try (ResultSet may = s.executeQuery(MAY_VACUUM_SQL)) {
                    mayVacuum = may.next() && may.getBoolean(1);
                }
                if (!mayVacuum) {
                    LOG.info("not vacuuming tasktable.live_task: role {} owns neither it nor the database; autovacuum "
                            + "alone keeps it (docs/dba-guide.md, \"Vacuum, autovacuum and fillfactor\")",
                            c.getMetaData().getUserName());
                    return;
                }
            }
            long dead;
            try (ResultSet rows = s.executeQuery(DEAD_ROWS_SQL)) {
                dead = rows.next() ? rows.getLong(1) : 0;
            }
            if (dead < options.vacuumThreshold()) {
                return;
            }
            vacuuming = s;
            if (closing) {
                return;
            }
            long start = System.nanoTime();
            s.execute(VACUUM_SQL);
            LOG.debug("vacuumed tasktable.live_task ({} dead row versions) in {} ms", dead, (System.nanoTime() - start) / 1_000_000);
        } catch (SQLException | RuntimeException e) {
            if (!closing) {
                LOG.warn("vacuum of tasktable.live_task failed, trying again later: {}", Retrying.summary(e));
            }
        } finally {
            vacuuming = null;
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
