package io.tasktable;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import javax.sql.DataSource;

import org.jooq.DSLContext;
import org.jooq.JSONB;
import org.jooq.exception.DataAccessException;
import org.jooq.impl.DSL;
import org.jooq.types.YearToSecond;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.tasktable.db.Routines;

/**
 * Sends the outcomes of finished attempts to the database, on threads of its own. Completions are batched into
 * one {@code complete_tasks} call (flushed by size or after a few milliseconds); the rarer failures and
 * snoozes go one call each. The threads take turns gathering: one gathers the next batch while another's is
 * sent. An outcome that could not be sent because of a passing outage is sent again until it gets through: the
 * attempt number fences it, so a repeat or a late report about a task rescued meanwhile changes nothing.
 */
final class Reporter {

    private static final Logger LOG = LoggerFactory.getLogger(Reporter.class);

    /**
     * Each complete_tasks call is a commit (a WAL flush), so bigger batches mean fewer flushes per task. bench
     * drain, one worker, claim batch and concurrency 500, median of 3: 100 per call -> 12,450 tasks/s (one run),
     * 500 per call -> 31,781 tasks/s. Under light load a batch stays small: it is sent after FLUSH_DELAY.
     */
    static final int MAX_BATCH = 500;
    /** Long enough to gather the completions of a busy worker, short against any task's duration. */
    static final Duration FLUSH_DELAY = Duration.ofMillis(5);

    /** How long a gathering reporter sleeps between looks at the pending outcomes (a few looks per batch). */
    static final Duration GATHER_SLICE = Duration.ofMillis(1);

    /** How often an idle reporter checks whether it should stop. */
    private static final Duration IDLE_POLL = Duration.ofMillis(100);

    record Report(Run run, TaskResult result) {
        long id() {
            return run.task.id();
        }

        int attempt() {
            return run.task.attempt();
        }
    }

    private final DSLContext db;
    private final DataSource dataSource;
    /** complete_tasks as jOOQ renders it from the generated binding, rendered once: see {@link #complete}. */
    private final String completeSql;
    private final WorkerObserver observer;
    private final BlockingQueue<Report> pending = new LinkedBlockingQueue<>();
    /**
     * Runs reported and not yet delivered (pending or in the batch being sent): their leases still need renewing.
     * A run reports once (its ending is claimed once) and is compared by identity: a set of reports, compared
     * field by field with their results, cost half the worker's CPU in bench drain.
     */
    private final Set<Run> undelivered = ConcurrentHashMap.newKeySet();
    /**
     * Threads that send, each on a pooled connection of its own. With one, a worker had one completion in flight at
     * a time, and the machine stood idle while it committed: bench drain of 400,000 at claims of 500 x 2,000, perf
     * of the whole machine, 9-10% idle and 61,349-62,371 tasks/s with one, 3.5-3.9% idle and 68,861-71,839 tasks/s
     * with two (and {@link Worker#MAX_UNREPORTED} doubled, as two batches in flight need).
     */
    static final int SENDERS = 2;

    private final List<Thread> threads;
    /** Held by the thread gathering a batch: one at a time, so batches are as large as with one thread. */
    private final ReentrantLock gathering = new ReentrantLock();
    /** Reports taken off {@code pending} and not yet through (the batches being sent). */
    private final AtomicInteger inFlight = new AtomicInteger();
    private volatile boolean closing;
    /** Valid once closing is set (it is written first). */
    private volatile long giveUpAtNanos;

    Reporter(DSLContext db, DataSource dataSource, String workerId, WorkerObserver observer) {
        this.db = db;
        this.dataSource = dataSource;
        this.completeSql = db.select(Routines.completeTasks((Long[]) null, null, null)).getSQL(); // bound per call
        this.observer = observer;
        this.threads = IntStream.range(0, SENDERS)
                .mapToObj(i -> Thread.ofPlatform().daemon().name("tasktable-report-" + workerId + "-" + i).unstarted(this::loop))
                .toList();
    }

    void start() {
        threads.forEach(Thread::start);
    }

    void report(Run run, TaskResult result) {
        Report report = new Report(run, result);
        undelivered.add(run);
        pending.add(report);
    }

    /**
     * The runs whose outcome waits to be delivered. The heartbeat keeps renewing their leases: an outcome held up
     * by a slow or failing database (a commit killed and retried, a lock) must not let the lease lapse, or the
     * task is rescued and run again although its outcome is known.
     */
    Stream<Run> awaitingDelivery() {
        return undelivered.stream();
    }

    /** Outcomes reported and not yet in the database. */
    int backlog() {
        return pending.size() + inFlight.get();
    }

    /** Sends everything reported so far, retrying outages until the deadline, then stops. */
    void close(Duration deadline) throws InterruptedException {
        giveUpAtNanos = System.nanoTime() + deadline.toNanos();
        closing = true;
        for (Thread thread : threads) {
            thread.join();
        }
    }

    private void loop() {
        Retrying retrying = new Retrying();
        List<Report> batch = new ArrayList<>();
        int taken = 0; // this thread's part of inFlight: the size of its batch when gathered
        try {
            while (!(closing && pending.isEmpty() && batch.isEmpty())) {
                if (batch.isEmpty()) {
                    inFlight.addAndGet(-taken); // the last batch is through, or given up
                    taken = 0;
                    gathering.lockInterruptibly();
                    try {
                        fill(batch);
                    } catch (OutOfMemoryError e) {
                        // a handler filled the heap; what was taken from pending is in the batch, sent below
                        Worker.survive("gathering outcomes broke off", e);
                    } finally {
                        taken = batch.size();
                        inFlight.addAndGet(taken);
                        gathering.unlock();
                    }
                    if (batch.isEmpty()) {
                        continue;
                    }
                }
                try {
                    send(batch);
                    retrying.reset();
                } catch (RuntimeException | OutOfMemoryError e) {
                    // out of memory: a handler filled the heap; like an outage it passes, and this thread must live on
                    if (!(e instanceof OutOfMemoryError) && !Retrying.isTransient(e)) {
                        LOG.error("could not report {} outcome(s) (tasks {}); their leases will expire and they will run again",
                                batch.size(), ids(batch), e);
                        batch.forEach(r -> undelivered.remove(r.run()));
                        batch.clear();
                    } else if (closing && System.nanoTime() - giveUpAtNanos > 0) {
                        LOG.error("database unreachable at shutdown: {} outcome(s) not reported (tasks {}); their leases "
                                + "will expire and they will run again", batch.size() + pending.size(), ids(batch), e);
                        batch.clear();
                        pending.clear();
                        undelivered.clear();
                    } else {
                        Duration delay = retrying.nextDelay();
                        try {
                            LOG.warn("reporting {} outcome(s) failed, retrying in {} ms: {}", batch.size(), delay.toMillis(),
                                    Retrying.summary(e));
                        } catch (OutOfMemoryError again) {
                            // the heap is still full; the retry below is what matters
                        }
                        Thread.sleep(delay);
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            inFlight.addAndGet(-taken);
        }
    }

    /** Waits for the first pending outcome, then gathers more for a few milliseconds, up to a full batch. */
    private void fill(List<Report> batch) throws InterruptedException {
        // closing: the other thread may have waited its turn through this one's last poll
        Report first = pending.poll(closing ? 0 : IDLE_POLL.toMillis(), TimeUnit.MILLISECONDS);
        if (first == null) {
            return;
        }
        batch.add(first);
        long flushAt = System.nanoTime() + FLUSH_DELAY.toNanos();
        while (true) {
            // what is there already, in one go (taking the queue's lock once, not once per report)
            pending.drainTo(batch, MAX_BATCH - batch.size());
            long left = flushAt - System.nanoTime();
            if (batch.size() == MAX_BATCH || left <= 0 || closing) {
                return;
            }
            // Sleeps between looks rather than waiting on the queue: a thread waiting there is woken by each report
            // offered, a futex wake and a context switch per task, paid by the task's carrier thread and here.
            Thread.sleep(Duration.ofNanos(Math.min(left, GATHER_SLICE.toNanos())));
        }
    }

    /**
     * Sends the batch; each report leaves it once the database has it, so a retry resends only the rest. A
     * report the database refuses for good (not an outage: e.g. a result over the size limit or holding a NUL)
     * is dealt with alone, so it never takes the other outcomes of its batch down with it.
     */
    private void send(List<Report> batch) {
        List<Report> completions = new ArrayList<>(batch.size());
        for (Report r : batch) {
            if (r.result() instanceof TaskResult.Success) {
                completions.add(r);
            }
        }
        if (!completions.isEmpty()) {
            Set<Long> rejected = new HashSet<>();
            Set<Long> done = complete(completions, rejected);
            observer.completed(done.size());
            for (Report r : completions) {
                if (!done.contains(r.id()) && !rejected.contains(r.id())) {
                    LOG.warn("task {} attempt {}: completion refused, the worker no longer held it (rescued or cancelled)",
                            r.id(), r.attempt());
                }
            }
            // removeIf and one remove per run: removeAll compares every pair, quadratic in the batch
            batch.removeIf(r -> r.result() instanceof TaskResult.Success);
            for (Report r : completions) {
                undelivered.remove(r.run());
            }
        }
        while (!batch.isEmpty()) {
            Report r = batch.getFirst();
            boolean held;
            try {
                held = switch (r.result()) {
                    case TaskResult.Snooze snooze ->
                            Routines.snoozeTask(db.configuration(), r.id(), r.attempt(), YearToSecond.valueOf(snooze.delay()));
                    case TaskResult.Retry retry -> fail(r, retry.reason(), true, retry.delay().orElse(null));
                    case TaskResult.GiveUp giveUp -> fail(r, giveUp.reason(), false, null);
                    case TaskResult.Success ignored -> throw new IllegalStateException("completions are sent above");
                };
            } catch (RuntimeException e) {
                if (Retrying.isTransient(e)) {
                    throw e;
                }
                LOG.error("task {} attempt {}: the database refused its outcome {}; its lease will expire and it will run "
                        + "again: {}", r.id(), r.attempt(), r.result(), Retrying.summary(e));
                batch.removeFirst();
                undelivered.remove(r.run());
                continue;
            }
            if (held && !(r.result() instanceof TaskResult.Snooze)) {
                observer.failed(1);
            } else if (!held) {
                LOG.warn("task {} attempt {}: outcome refused, the worker no longer held it (rescued or cancelled)",
                        r.id(), r.attempt());
            }
            batch.removeFirst();
            undelivered.remove(r.run());
        }
    }

    /**
     * complete_tasks; returns the ids completed. Those whose result the database refused are failed for good
     * instead, the refusal as their error (the handler would most likely return the same result again), and
     * added to {@code rejected}.
     */
    private Set<Long> complete(List<Report> completions, Set<Long> rejected) {
        try {
            int n = completions.size();
            Long[] ids = new Long[n];
            Integer[] attempts = new Integer[n];
            String[] results = new String[n];
            boolean anyResult = false;
            for (int i = 0; i < n; i++) {
                Report r = completions.get(i);
                ids[i] = r.id();
                attempts[i] = r.attempt();
                results[i] = ((TaskResult.Success) r.result()).result().map(Json::jsonb).map(JSONB::data).orElse(null);
                anyResult |= results[i] != null;
            }
            // No result at all: NULL rather than an array of NULLs, which the database would parse and then scan
            // (docs/instructions.sh, claims of 128: 1,100 instructions per task, item 45).
            return new HashSet<>(Arrays.asList(completeTasks(ids, attempts, anyResult ? results : null)));
        } catch (RuntimeException e) {
            if (Retrying.isTransient(e)) {
                throw e;
            }
            if (completions.size() > 1) {
                Set<Long> done = new HashSet<>();
                for (Report r : completions) {
                    done.addAll(complete(List.of(r), rejected));
                }
                return done;
            }
            Report r = completions.getFirst();
            String reason = "the database refused the task's result: " + Retrying.summary(e);
            LOG.error("task {} attempt {}: {}; failing it for good", r.id(), r.attempt(), reason);
            fail(r, reason, false, null);
            observer.failed(1);
            rejected.add(r.id());
            return Set.of();
        }
    }

    /**
     * complete_tasks with the statement rendered once ({@link #completeSql}), its arrays bound by the driver.
     * Measured in bench drain of 300,000 at claims of 500 x 2,000 (JFR of the worker): through the generated routine,
     * jOOQ writing each batch's arrays out as text literals and running the call took 12-15% of the reporter
     * thread's samples, about 5% of the worker's.
     */
    private Long[] completeTasks(Long[] ids, Integer[] attempts, String[] results) {
        try (Connection c = dataSource.getConnection(); PreparedStatement call = c.prepareStatement(completeSql)) {
            call.setArray(1, c.createArrayOf("int8", ids));
            call.setArray(2, c.createArrayOf("int4", attempts));
            if (results == null) {
                call.setNull(3, Types.ARRAY);
            } else {
                call.setArray(3, c.createArrayOf("jsonb", results));
            }
            try (ResultSet row = call.executeQuery()) {
                row.next();
                Array done = row.getArray(1);
                return done == null ? null : (Long[]) done.getArray();
            }
        } catch (SQLException e) {
            throw new DataAccessException("complete_tasks: " + e.getMessage(), e);
        }
    }

    /** fail_task; a retry delay becomes retry_at = now() + delay, by the database clock. NUL becomes U+FFFD. */
    private boolean fail(Report r, String reason, boolean retryable, Duration delay) {
        // PostgreSQL text cannot hold NUL: one in an exception message would make the failure itself unreportable
        String error = reason.replace('\u0000', '\uFFFD');
        if (delay == null) {
            return Routines.failTask(db.configuration(), r.id(), r.attempt(), error, retryable, null) != null;
        }
        return db.select(Routines.failTask(DSL.val(r.id()), DSL.val(r.attempt()), DSL.val(error), DSL.val(retryable),
                        DSL.currentOffsetDateTime().add(DSL.val(YearToSecond.valueOf(delay)))))
                .fetchSingle().value1() != null;
    }

    private static List<Long> ids(List<Report> batch) {
        return batch.stream().map(Report::id).toList();
    }
}
