package io.tasktable;

import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * How a {@link Worker} runs. Start from {@link #defaults()} and change what differs.
 *
 * @param queues          the queues to claim from; empty means all queues
 * @param concurrency     most tasks running at once (each on its own virtual thread)
 * @param pollInterval    how often an idle worker looks for due tasks without being notified (retries after
 *                        backoff and future run_at tasks are not notified)
 * @param handlerTimeout  a handler running longer is interrupted and its attempt fails (retryable)
 * @param shutdownGrace   on close, how long running tasks may finish before they are handed back
 * @param lease           the lease to claim with; empty means each queue's {@code lease}
 * @param rescueInterval  how often the workers rescue tasks whose lease expired (one worker at a time)
 * @param pruneInterval   how often the workers delete finished tasks past retention (one worker at a time)
 * @param claimBatch      most tasks one claim_tasks call takes; a claim also takes no more than the free slots, nor
 *                        more than its claim thread's share of the concurrency ({@link #claimSize()})
 * @param vacuumThreshold while it claims, the worker runs {@code VACUUM} on {@code tasktable.live_task} once the
 *                        table holds this many dead row versions (about two per task claimed and finished), if
 *                        its role may (it owns the table or the database); 0 leaves vacuuming to autovacuum alone
 */
public record WorkerOptions(List<String> queues, int concurrency, Duration pollInterval, Duration handlerTimeout,
                            Duration shutdownGrace, Optional<Duration> lease, Duration rescueInterval,
                            Duration pruneInterval, int claimBatch, long vacuumThreshold) {

    /** Enough to keep a few slow webhooks from starving the rest, few enough for a small pool and database. */
    public static final int DEFAULT_CONCURRENCY = 10;
    /**
     * A fallback only: ready tasks are announced by NOTIFY at once. 1 s bounds the delay of a retry or a
     * future run_at task at about a second, for one cheap index probe per idle worker per second.
     */
    public static final Duration DEFAULT_POLL_INTERVAL = Duration.ofSeconds(1);
    /** Long enough for any sane task; a hung handler still gives its slot's task back within minutes. */
    public static final Duration DEFAULT_HANDLER_TIMEOUT = Duration.ofMinutes(5);
    /** Half of Kubernetes' default 30 s termination period, leaving the rest for handing tasks back. */
    public static final Duration DEFAULT_SHUTDOWN_GRACE = Duration.ofSeconds(15);
    /** A crashed worker's tasks come back within a few seconds of their lease expiring. */
    public static final Duration DEFAULT_RESCUE_INTERVAL = Duration.ofSeconds(5);
    /** Retention is counted in days; pruning every ten minutes keeps each delete small. */
    public static final Duration DEFAULT_PRUNE_INTERVAL = Duration.ofMinutes(10);
    /**
     * Most tasks per claim_tasks call (a worker never claims more than it has free slots for). Larger claims
     * cost less per task: bench drain, one worker, concurrency = batch, median of 3: 100 -> 26,138 tasks/s,
     * 500 -> 31,781 tasks/s (docs/performance.md). It matches the reporter's completion batch.
     */
    public static final int DEFAULT_CLAIM_BATCH = 500;
    /**
     * Dead row versions in live_task that make a claiming worker vacuum it (a claim and a completion leave one each).
     * Every claim steps over the claim index entries of the tasks claimed since the last VACUUM, so claims slow down
     * as a drain goes on, and autovacuum looks at a table at most once a minute (autovacuum_naptime). bench drain of
     * 1,000,000 at claims of 500: 65,407 / 70,842 tasks/s without, 79,531 / 81,870 with; each VACUUM took 0.1-0.3 s
     * at 200,000 dead versions, 1 s at 600,000 (docs/performance.md, item 40).
     */
    public static final long DEFAULT_VACUUM_THRESHOLD = 200_000;
    /** claim_tasks takes at most 10000 tasks per call. */
    static final int MAX_CONCURRENCY = 10_000;

    public WorkerOptions {
        queues = List.copyOf(queues);
        if (concurrency < 1 || concurrency > MAX_CONCURRENCY) {
            throw new IllegalArgumentException("concurrency must be between 1 and " + MAX_CONCURRENCY + ", got " + concurrency);
        }
        positive("pollInterval", pollInterval);
        positive("handlerTimeout", handlerTimeout);
        Objects.requireNonNull(shutdownGrace, "shutdownGrace");
        if (shutdownGrace.isNegative()) {
            throw new IllegalArgumentException("shutdownGrace must be zero or more, got " + shutdownGrace);
        }
        Objects.requireNonNull(lease, "lease");
        lease.ifPresent(l -> {
            if (l.compareTo(Duration.ofSeconds(1)) < 0 || l.compareTo(Duration.ofDays(1)) > 0) {
                throw new IllegalArgumentException("lease must be between 1 second and 1 day, got " + l);
            }
        });
        positive("rescueInterval", rescueInterval);
        positive("pruneInterval", pruneInterval);
        if (claimBatch < 1 || claimBatch > MAX_CONCURRENCY) {
            throw new IllegalArgumentException("claimBatch must be between 1 and " + MAX_CONCURRENCY + ", got " + claimBatch);
        }
        if (vacuumThreshold < 0) {
            throw new IllegalArgumentException("vacuumThreshold must be zero (never) or more, got " + vacuumThreshold);
        }
    }

    /**
     * Threads that claim: two, so that one claim waits on the database while the other's tasks start (one when
     * concurrency is 1). bench drain of 50,000, concurrency 64, claim batch 500: one thread claiming up to 64,
     * 14,810 tasks/s; two claiming up to 32 each, 22,079 tasks/s.
     */
    public int claimThreads() {
        return concurrency >= 2 ? 2 : 1;
    }

    /** Most tasks one claim takes: the concurrency shared between the claim threads (rounded up), at most {@code claimBatch}. */
    public int claimSize() {
        return Math.min(claimBatch, (concurrency + claimThreads() - 1) / claimThreads());
    }

    private static void positive(String name, Duration value) {
        Objects.requireNonNull(value, name);
        if (value.isNegative() || value.isZero()) {
            throw new IllegalArgumentException(name + " must be positive, got " + value);
        }
    }

    public static WorkerOptions defaults() {
        return new WorkerOptions(List.of(), DEFAULT_CONCURRENCY, DEFAULT_POLL_INTERVAL, DEFAULT_HANDLER_TIMEOUT,
                DEFAULT_SHUTDOWN_GRACE, Optional.empty(), DEFAULT_RESCUE_INTERVAL, DEFAULT_PRUNE_INTERVAL, DEFAULT_CLAIM_BATCH,
                DEFAULT_VACUUM_THRESHOLD);
    }

    public WorkerOptions withQueues(List<String> newQueues) {
        return new WorkerOptions(newQueues, concurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withConcurrency(int newConcurrency) {
        return new WorkerOptions(queues, newConcurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withPollInterval(Duration newPollInterval) {
        return new WorkerOptions(queues, concurrency, newPollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withHandlerTimeout(Duration newHandlerTimeout) {
        return new WorkerOptions(queues, concurrency, pollInterval, newHandlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withShutdownGrace(Duration newShutdownGrace) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, newShutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withLease(Duration newLease) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, shutdownGrace,
                Optional.of(newLease), rescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withRescueInterval(Duration newRescueInterval) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                newRescueInterval, pruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withPruneInterval(Duration newPruneInterval) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, newPruneInterval, claimBatch, vacuumThreshold);
    }

    public WorkerOptions withClaimBatch(int newClaimBatch) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, newClaimBatch, vacuumThreshold);
    }

    public WorkerOptions withVacuumThreshold(long newVacuumThreshold) {
        return new WorkerOptions(queues, concurrency, pollInterval, handlerTimeout, shutdownGrace, lease,
                rescueInterval, pruneInterval, claimBatch, newVacuumThreshold);
    }
}
