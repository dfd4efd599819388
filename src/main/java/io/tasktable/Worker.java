package io.tasktable;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import javax.sql.DataSource;

import org.jooq.DSLContext;
import org.jooq.Field;
import org.jooq.SQLDialect;
import org.jooq.exception.DataAccessException;
import org.jooq.impl.DSL;
import org.jooq.impl.SQLDataType;
import org.jooq.types.YearToSecond;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.tasktable.db.Routines;
import io.tasktable.db.tables.ClaimTasks;

import static io.tasktable.db.Tables.QUEUE;

/**
 * Drains the queue: claims batches sized to its free capacity, runs each task's handler on a virtual
 * thread, and reports the outcome, all through the SQL functions (the rules — backoff, state changes,
 * fencing — are theirs). Wakes on NOTIFY, polls as a fallback, renews leases of long tasks, takes its
 * turn at rescuing expired leases and pruning, and vacuums live_task while it drains (if its role may: see
 * {@link WorkerOptions#vacuumThreshold()}). Every database call survives a lost connection: it is
 * retried after a short backoff, and outcomes are kept until the database has them.
 *
 * <p>{@link #close()} shuts down gracefully: no new claims, running tasks get the shutdown grace to finish,
 * the rest are handed back to run again at once (on this or another worker) without using up an attempt.
 */
public final class Worker implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(Worker.class);

    /** How often the heartbeat looks for leases to renew: well under a third of the shortest lease (1 s). */
    static final Duration HEARTBEAT_TICK = Duration.ofMillis(100);
    /** At shutdown, how long outcomes may wait for a failing database before the leases are left to expire. */
    static final Duration REPORT_DEADLINE = Duration.ofSeconds(5);
    /**
     * Claims pause while this many outcomes wait to be sent. A handler's slot frees when it returns, before its
     * outcome reaches the database; without this bound a worker whose completions lag (a slow database) claimed
     * ever more, until leases expired and tasks ran twice (bench drain of 50,000: 25,200 completions refused).
     * Room for a full batch in flight on each of the reporter's threads and as many waiting (at one batch per
     * thread, the claims paused whenever both were sending): a few tens of milliseconds of completions at full
     * speed, far inside any lease.
     */
    static final int MAX_UNREPORTED = 2 * Reporter.SENDERS * Reporter.MAX_BATCH;
    /**
     * How long a claim thread waits for half a batch of free slots when tasks are waiting (never when the last claim
     * found none, so an idle worker claims a new task at once). Without it a claim thread woke at the first free slot
     * and claimed what was free then: bench drain, median of 3, two alternating pairs, 1 x 256 (claims of up to
     * 128) took 84 per claim on average, 59,622 / 66,675 tasks/s; with it 104-107, 72,229 / 66,170; 1 x 64 (up to
     * 32) 21.3 -> 28.0-28.1 per claim, 34,709 / 38,992 -> 41,612 / 44,648 tasks/s. Latency at 50/s and steady at
     * 2,000/s did not move (p50 0.89 and 1.84 ms).
     */
    static final Duration FILL_WAIT = Duration.ofMillis(1);
    /**
     * Claims of this many tasks or more start them from a virtual thread ({@link #startAll}); smaller ones from the
     * claim thread, as the extra thread cost more than it saved there (claims of 1: a third more of the worker's CPU
     * per task, item 43 of docs/performance.md).
     */
    static final int STARTER_MIN = 16;
    /** How often blocked loops check whether the worker is closing. */
    private static final Duration STOP_CHECK = Duration.ofMillis(100);

    private final String id;
    private final Map<String, TaskHandler> handlers;
    private final WorkerOptions options;
    private final WorkerObserver observer;
    private final DSLContext db;
    /** claim_tasks arguments: null means all queues, and the queue's own lease. */
    private final String[] queues;
    private final YearToSecond lease;
    /** The lease bound into each claim: ISO 8601 text (PT5M), which PostgreSQL reads as an interval. */
    private final String leaseText;
    private final DataSource dataSource;
    /** The claim as jOOQ renders it from the generated binding, rendered once: see {@link #claim}. */
    private final String claimSql;
    private final Semaphore slots;
    private final Map<Long, Run> running = new ConcurrentHashMap<>();
    private final Wakeup wakeup = new Wakeup();
    private final Object runEnded = new Object();
    private final Reporter reporter;
    private final Listener listener;
    private final Maintenance maintenance;
    private final HandlerTimeouts timer;
    /**
     * {@link WorkerOptions#claimThreads()} threads: while one claim waits on the database, the other's tasks start.
     * bench drain of 100,000, one worker, two runs each, one thread -> two: claim batch 100 x 200, 24,831 / 26,987
     * -> 32,180 / 31,521 tasks/s; batch 500 x 1,000, 30,366 / 36,694 -> 36,220 / 41,677 tasks/s.
     */
    private final List<Thread> claimers;
    private final Thread heartbeat;
    private final AtomicBoolean closeStarted = new AtomicBoolean();
    private final CountDownLatch closed = new CountDownLatch(1);
    private volatile boolean stopping;
    private volatile boolean heartbeatStopped;

    private Worker(ConnectionPool pool, Map<String, TaskHandler> handlers, WorkerOptions options,
                   WorkerObserver observer) {
        this.id = newId();
        this.handlers = Map.copyOf(handlers);
        this.options = options;
        this.observer = observer;
        this.db = DSL.using(pool.dataSource(), SQLDialect.POSTGRES);
        this.queues = options.queues().isEmpty() ? null : options.queues().toArray(String[]::new);
        this.lease = options.lease().map(YearToSecond::valueOf).orElse(null);
        this.leaseText = options.lease().map(Duration::toString).orElse(null);
        this.dataSource = pool.dataSource();
        ClaimTasks call = Routines.claimTasks(0, "", null, null); // the values are bound per claim
        this.claimSql = db.select(call.ID, call.QUEUE, call.KIND, call.PAYLOAD, call.ATTEMPT,
                secondsBetween(call.STARTED_AT, call.LEASE_EXPIRES_AT), secondsBetween(call.RUN_AT, call.STARTED_AT))
                .from(call).getSQL();
        this.slots = new Semaphore(options.concurrency());
        this.reporter = new Reporter(db, pool.dataSource(), id, observer);
        this.listener = new Listener(pool, Set.copyOf(options.queues()), wakeup, id);
        this.maintenance = new Maintenance(db, pool.dataSource(), options, id, observer);
        // Each run's timeout is cancelled (unlinked) when it ends: cancelled timeouts kept for the whole handler
        // timeout (5 minutes), each holding its run, were 150,000 runs at 500 tasks/s, past a 64 MB heap.
        this.timer = new HandlerTimeouts(options.handlerTimeout(), "tasktable-timeout-" + id);
        this.claimers = IntStream.range(0, options.claimThreads())
                .mapToObj(i -> Thread.ofPlatform().daemon().name("tasktable-claim-" + id + "-" + i).unstarted(this::claimLoop))
                .toList();
        this.heartbeat = Thread.ofPlatform().daemon().name("tasktable-heartbeat-" + id).unstarted(this::heartbeatLoop);
    }

    /**
     * Starts a worker that runs each claimed task with the handler registered for its kind. The worker
     * borrows the pool: close the worker first, then the pool.
     *
     * @throws IllegalArgumentException when a queue in the options does not exist
     */
    public static Worker start(ConnectionPool pool, Map<String, TaskHandler> handlers, WorkerOptions options) {
        return start(pool, handlers, options, WorkerObserver.NONE);
    }

    /** As {@link #start(ConnectionPool, Map, WorkerOptions)}, reporting what it does to an observer (metrics). */
    public static Worker start(ConnectionPool pool, Map<String, TaskHandler> handlers, WorkerOptions options,
                               WorkerObserver observer) {
        Objects.requireNonNull(pool, "pool");
        Objects.requireNonNull(handlers, "handlers");
        Objects.requireNonNull(options, "options");
        Objects.requireNonNull(observer, "observer");
        Worker worker = new Worker(pool, handlers, options, observer);
        worker.checkQueues();
        worker.reporter.start();
        worker.listener.start();
        worker.maintenance.start();
        worker.heartbeat.start();
        worker.claimers.forEach(Thread::start);
        LOG.info("worker {} started: queues {}, concurrency {}, kinds {}", worker.id,
                options.queues().isEmpty() ? "all" : options.queues(), options.concurrency(),
                worker.handlers.keySet().stream().sorted().toList());
        return worker;
    }

    /** This worker's name, {@code host:pid:random}, recorded on the tasks it claims. */
    public String id() {
        return id;
    }

    private void checkQueues() {
        if (queues == null) {
            return;
        }
        Set<String> known = db.select(QUEUE.NAME).from(QUEUE).where(QUEUE.NAME.in(options.queues())).fetchSet(QUEUE.NAME);
        List<String> unknown = options.queues().stream().filter(q -> !known.contains(q)).toList();
        if (!unknown.isEmpty()) {
            throw new IllegalArgumentException("unknown queue(s) " + unknown
                    + "; create one with INSERT INTO tasktable.queue (name) VALUES ('...')");
        }
    }

    private void claimLoop() {
        Retrying retrying = new Retrying();
        boolean backlog = true;
        try {
            while (!stopping) {
                if (reporter.backlog() >= MAX_UNREPORTED) {
                    Thread.sleep(1);
                    continue;
                }
                // slots this round holds for tasks not (yet) running; given back if the round breaks off
                int held = 0;
                try {
                    if (!slots.tryAcquire(STOP_CHECK.toMillis(), TimeUnit.MILLISECONDS)) {
                        continue;
                    }
                    held = 1;
                    if (!backlog) {
                        wakeup.await(options.pollInterval());
                    }
                    if (stopping) {
                        break;
                    }
                    int n = 1 + slots.drainPermits();
                    held = n;
                    int half = options.claimSize() / 2;
                    if (backlog && n < half) {
                        // Tasks are waiting and few slots are free: running tasks free more within moments, and a
                        // claim taking them then costs one transaction where claiming now and again costs several.
                        if (slots.tryAcquire(half - n, FILL_WAIT.toNanos(), TimeUnit.NANOSECONDS)) {
                            n = half;
                            held = n;
                        }
                        n += slots.drainPermits();
                        held = n;
                    }
                    if (n > options.claimSize()) {
                        slots.release(n - options.claimSize());
                        n = options.claimSize();
                        held = n;
                    }
                    List<Claim> claimed;
                    try {
                        claimed = claim(n);
                        retrying.reset();
                    } catch (RuntimeException e) {
                        Duration delay = retrying.nextDelay();
                        LOG.warn("claiming failed, retrying in {} ms: {}", delay.toMillis(), Retrying.summary(e));
                        slots.release(held);
                        held = 0;
                        wakeup.await(delay);
                        backlog = true;
                        continue;
                    }
                    slots.release(n - claimed.size());
                    held = claimed.size();
                    // Claim again at once after any claim that found tasks, not only a full one: an enqueue that
                    // committed just after the NOTIFY that woke us was announced by that NOTIFY (enqueue_tasks
                    // elects one notifier per queue at a time), so the next claim must not wait for another.
                    backlog = !claimed.isEmpty();
                    if (!claimed.isEmpty()) {
                        observer.claimed(claimed.size());
                        maintenance.claimed();
                        if (claimers.size() > 1) {
                            wakeup.signal(); // there may be more: an idle peer claims them meanwhile
                        }
                    }
                    long now = System.nanoTime();
                    int[] started = {0};
                    try {
                        startAll(claimed, () -> {
                            for (Claim claim : claimed) {
                                dispatch(claim, now);
                                started[0]++;
                            }
                        });
                    } finally {
                        held -= started[0];
                    }
                } catch (RuntimeException | OutOfMemoryError e) {
                    // E.g. a handler filled the heap (its memory is freed as its attempt fails). This thread must
                    // live on: a worker whose claim loop died would claim nothing, for good. Tasks claimed in this
                    // round and not started stay running until their lease expires and they are rescued.
                    survive("claiming broke off; claiming again shortly", e);
                    backlog = true;
                    wakeup.await(STOP_CHECK);
                } finally {
                    slots.release(held);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Runs {@code dispatching} (which starts a claim's tasks) on this thread for a small claim, or on a virtual thread
     * for a claim of {@link #STARTER_MIN} tasks or more, waiting for it either way. A task's virtual thread started
     * from a platform thread is handed to the scheduler's shared queue and wakes a parked carrier thread; started
     * from a virtual thread it goes to its carrier's own queue, where the carriers find the next one without parking
     * in between. bench drain 1 x 256 (claims of 128), the worker's CPU per task: item 45 of docs/performance.md.
     */
    private static void startAll(List<Claim> claimed, Runnable dispatching) {
        if (claimed.size() < STARTER_MIN) {
            dispatching.run();
            return;
        }
        Throwable[] failure = {null};
        Thread starter = Thread.ofVirtual().start(() -> {
            try {
                dispatching.run();
            } catch (RuntimeException | Error e) {
                failure[0] = e;
            }
        });
        // waits it out even if interrupted: the caller counts the slots of the tasks it started
        boolean interrupted = false;
        while (true) {
            try {
                starter.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        switch (failure[0]) {
            case null -> { }
            case RuntimeException e -> throw e;
            case Error e -> throw e;
            default -> throw new IllegalStateException(failure[0]);
        }
    }

    /** A claimed task as the worker needs it: what the handler gets, its lease, and how late the claim came. */
    private record Claim(ClaimedTask task, Duration lease, Duration lateAtClaim) {}

    /** Seconds from one timestamp to the other, by the database ({@code date_part} is a double, unlike extract). */
    private static Field<Double> secondsBetween(Field<OffsetDateTime> from, Field<OffsetDateTime> to) {
        return DSL.field("date_part('epoch', {0} - {1})", SQLDataType.DOUBLE, to, from);
    }

    private static Duration seconds(double s) {
        return Duration.ofNanos(Math.round(s * 1e9));
    }

    /**
     * claim_tasks, reading only the columns a run needs. The statement is the one jOOQ renders from the generated
     * binding, rendered once ({@link #claimSql}); each claim binds its values and reads the driver's result set.
     * Measured in bench drain (JFR of the worker): reading whole rows (17 columns, 4 timestamps formatted to text by
     * the driver and parsed back by jOOQ) took about half the claim thread's time; jOOQ's record mapping of the 8
     * columns then cost about 3 microseconds of CPU per task (2 x 300,000 tasks at claims of 500: CPU of the bench
     * and its worker 11.2 / 10.6 s with it, 9.1 / 9.0 s without); and rendering the call on every claim was 30% of
     * the worker's CPU samples at claims of 10 (214 of 726). The lease and the lateness come as seconds computed by
     * the database: decoding three timestamps per task took a third of the claim threads' samples, and the lateness
     * no longer mixes the database's clock (run_at) with the worker's (perf of a drain of 400,000 at claims of 500,
     * two alternating pairs: the worker's CPU 0.208 / 0.195 of the server's with timestamps, 0.189 / 0.160 without).
     */
    private List<Claim> claim(int n) {
        try (Connection c = dataSource.getConnection(); PreparedStatement call = c.prepareStatement(claimSql)) {
            call.setInt(1, n);
            call.setString(2, id);
            call.setArray(3, queues == null ? null : c.createArrayOf("text", queues));
            call.setString(4, leaseText);
            try (ResultSet rows = call.executeQuery()) {
                List<Claim> claimed = new ArrayList<>(n);
                while (rows.next()) {
                    ClaimedTask task = new ClaimedTask(rows.getLong(1), rows.getString(2), rows.getString(3),
                            Json.parse(rows.getString(4)), rows.getInt(5));
                    claimed.add(new Claim(task, seconds(rows.getDouble(6)), seconds(rows.getDouble(7))));
                }
                return claimed;
            }
        } catch (SQLException e) {
            throw new DataAccessException("claim_tasks: " + e.getMessage(), e);
        }
    }

    private void dispatch(Claim claim, long claimedNanos) {
        ClaimedTask task = claim.task();
        Run run = new Run(task, claim.lease(), id, claimedNanos, this::execute);
        running.put(task.id(), run);
        try {
            Duration sinceDue = claim.lateAtClaim().plusNanos(System.nanoTime() - claimedNanos);
            observer.started(task, sinceDue.isNegative() ? Duration.ZERO : sinceDue);
            run.start(timer.schedule(() -> timeOut(run)));
        } catch (RuntimeException | OutOfMemoryError e) {
            // never started: not ours to heartbeat, so its lease expires and it is rescued
            running.remove(task.id(), run);
            throw e;
        }
    }

    /** The body of a task's virtual thread. */
    private void execute(Run run) {
        try {
            long startedNanos = System.nanoTime();
            TaskResult result = invoke(run);
            observer.ran(run.task, Duration.ofNanos(System.nanoTime() - startedNanos));
            if (run.end(Run.Ending.FINISHED)) {
                reporter.report(run, result);
            }
        } finally {
            run.cancelTimeout();
            running.remove(run.task.id(), run);
            slots.release();
            synchronized (runEnded) {
                runEnded.notifyAll();
            }
        }
    }

    private TaskResult invoke(Run run) {
        ClaimedTask task = run.task;
        TaskHandler handler = handlers.get(task.kind());
        if (handler == null) {
            // Retryable: during a rolling deploy another worker may already know the kind.
            return TaskResult.retry("no handler registered for kind '" + task.kind() + "'");
        }
        try {
            TaskResult result = handler.handle(task, run);
            return result != null ? result
                    : TaskResult.retry("the handler for kind '" + task.kind() + "' returned null instead of a TaskResult");
        } catch (NonRetryableException e) {
            return TaskResult.giveUp(Failures.describe(e));
        } catch (Exception | Error e) {
            return TaskResult.retry(Failures.describe(e));
        }
    }

    private void timeOut(Run run) {
        if (run.end(Run.Ending.TIMED_OUT)) {
            Duration limit = options.handlerTimeout();
            String message = "timed out after " + (limit.toMillis() % 1000 == 0 ? limit.toSeconds() + "s" : limit.toMillis() + "ms");
            LOG.warn("task {} ({}) attempt {} {}: interrupted", run.task.id(), run.task.kind(), run.task.attempt(), message);
            reporter.report(run, TaskResult.retry(message));
            synchronized (runEnded) {
                runEnded.notifyAll();
            }
        }
    }

    /** Threads claiming for this worker (tests check the two-claimer mode). */
    int claimers() {
        return claimers.size();
    }

    /** Handler timeouts still scheduled: one per running task (tests check none outlive their run). */
    int pendingTimeouts() {
        return timer.pending();
    }

    private void heartbeatLoop() {
        try {
            while (!heartbeatStopped) {
                Thread.sleep(HEARTBEAT_TICK);
                try {
                    long now = System.nanoTime();
                    // running handlers, and finished ones whose outcome is not delivered yet
                    List<Run> due = Stream.concat(running.values().stream().filter(r -> r.renewalDue(now)),
                            reporter.awaitingDelivery().filter(r -> r.leaseRenewalDue(now))).distinct().toList();
                    if (!due.isEmpty()) {
                        renew(due, now);
                    }
                } catch (RuntimeException | OutOfMemoryError e) {
                    // e.g. a handler filled the heap; the heartbeat must outlive it or every lease would lapse
                    survive("renewing leases broke off; retrying at the next tick", e);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** extend_lease; a task missing from its answer is no longer ours: stop it and never report on it. */
    private void renew(List<Run> due, long now) {
        Long[] ids = due.stream().map(r -> r.task.id()).toArray(Long[]::new);
        Integer[] attempts = due.stream().map(r -> r.task.attempt()).toArray(Integer[]::new);
        Set<Long> extended;
        try {
            extended = new HashSet<>(Arrays.asList(Routines.extendLease(db.configuration(), ids, attempts, lease)));
        } catch (RuntimeException e) {
            LOG.warn("heartbeat failed, retrying: {}", Retrying.summary(e));
            return;
        }
        for (Run run : due) {
            if (extended.contains(run.task.id())) {
                run.renewed(now);
            } else if (run.end(Run.Ending.LEASE_LOST)) {
                LOG.warn("task {} ({}) attempt {}: lease lost (rescued or cancelled), handler interrupted, not reported",
                        run.task.id(), run.task.kind(), run.task.attempt());
            }
        }
    }

    /**
     * Stops gracefully: claims no more, lets running tasks finish within the shutdown grace, hands the rest
     * back (queued to run at once, the attempt not counted), and sends every outcome. Idempotent; a second
     * caller waits for the first. Handlers still running afterwards were interrupted and are not reported.
     */
    @Override
    public void close() {
        if (!closeStarted.compareAndSet(false, true)) {
            awaitClosed();
            return;
        }
        LOG.info("worker {} stopping: no new claims, running tasks have {} ms to finish", id,
                options.shutdownGrace().toMillis());
        boolean interrupted = false;
        try {
            stopping = true;
            wakeup.stop();
            for (Thread claimer : claimers) {
                claimer.join();
            }
            awaitRunsEnded(options.shutdownGrace());
        } catch (InterruptedException e) {
            interrupted = true;
        }
        List<Run> unfinished = running.values().stream().filter(r -> r.end(Run.Ending.HANDED_BACK)).toList();
        if (!unfinished.isEmpty()) {
            LOG.info("handing back {} unfinished task(s) to run again", unfinished.size());
        }
        unfinished.forEach(r -> reporter.report(r, TaskResult.snooze(Duration.ZERO)));
        heartbeatStopped = true;
        try {
            heartbeat.join();
            maintenance.close();
            listener.close();
            reporter.close(REPORT_DEADLINE);
        } catch (InterruptedException e) {
            interrupted = true;
        }
        timer.shutdownNow();
        closed.countDown();
        LOG.info("worker {} stopped", id);
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    private void awaitRunsEnded(Duration grace) throws InterruptedException {
        long deadline = System.nanoTime() + grace.toNanos();
        synchronized (runEnded) {
            long left;
            while (running.values().stream().anyMatch(Run::held) && (left = deadline - System.nanoTime()) > 0) {
                runEnded.wait(Math.max(1, Math.min(left / 1_000_000, STOP_CHECK.toMillis())));
            }
        }
    }

    private void awaitClosed() {
        try {
            closed.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Logs what broke off a round of one of the worker's loops, which then carries on. A handler that fills the
     * heap makes allocations fail on every thread for a moment; the logging itself may fail then, and must not
     * end the loop.
     */
    static void survive(String what, Throwable e) {
        try {
            LOG.error(what, e);
        } catch (RuntimeException | OutOfMemoryError ignored) {
            // nothing more can be said now; the loop goes on
        }
    }

    /** host:pid:random, so operators see where a task runs and two workers in one process differ. */
    private static String newId() {
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (UnknownHostException e) {
            host = Objects.requireNonNullElse(System.getenv("HOSTNAME"), "unknown-host");
        }
        String suffix = HexFormat.of().toHexDigits((short) ThreadLocalRandom.current().nextInt());
        return host.substring(0, Math.min(host.length(), 200)) + ":" + ProcessHandle.current().pid() + ":" + suffix;
    }
}
