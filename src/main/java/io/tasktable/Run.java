package io.tasktable;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * One claimed attempt while its worker holds it. Exactly one ending wins (first come): the handler finishing,
 * the timeout, the lease being lost, or the shutdown handing it back. Only the winner reports to the database.
 */
final class Run implements TaskContext {

    enum Ending { FINISHED, TIMED_OUT, LEASE_LOST, HANDED_BACK }

    final ClaimedTask task;
    /** The lease each claim or heartbeat grants; the heartbeat renews after a third of it. */
    final Duration lease;
    private final String workerId;
    private final AtomicReference<Ending> ending = new AtomicReference<>();
    private final Thread thread;
    private volatile long lastRenewedNanos;
    private volatile HandlerTimeouts.Timeout timeout;

    /** @param body what the run's virtual thread does once {@link #start started} */
    Run(ClaimedTask task, Duration lease, String workerId, long claimedNanos, Consumer<Run> body) {
        this.task = task;
        this.lease = lease;
        this.workerId = workerId;
        this.lastRenewedNanos = claimedNanos;
        this.thread = Thread.ofVirtual().name("tasktable-task-" + task.id()).unstarted(() -> body.accept(this));
    }

    /** Starts the handler thread; the timeout is cancelled when the thread ends. */
    void start(HandlerTimeouts.Timeout handlerTimeout) {
        this.timeout = handlerTimeout;
        thread.start();
    }

    void cancelTimeout() {
        timeout.cancel();
    }

    /** Claims the ending; true if this one won. Any ending but FINISHED interrupts the handler. */
    boolean end(Ending why) {
        if (!ending.compareAndSet(null, why)) {
            return false;
        }
        if (why != Ending.FINISHED) {
            thread.interrupt();
        }
        return true;
    }

    /** Still ours to heartbeat and report. */
    boolean held() {
        return ending.get() == null;
    }

    boolean renewalDue(long nowNanos) {
        return held() && leaseRenewalDue(nowNanos);
    }

    /** A third of the lease passed since the claim or the last renewal, whether or not the run ended. */
    boolean leaseRenewalDue(long nowNanos) {
        return nowNanos - lastRenewedNanos >= lease.toNanos() / 3;
    }

    void renewed(long nowNanos) {
        lastRenewedNanos = nowNanos;
    }

    @Override
    public String workerId() {
        return workerId;
    }

    @Override
    public boolean stopRequested() {
        Ending why = ending.get();
        return why != null && why != Ending.FINISHED;
    }
}
