package io.tasktable;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The handler timeouts of one worker, on one thread. Every timeout has the same length (the worker's handler
 * timeout), so timeouts expire in the order they were set: they are kept in a linked list in that order, a timeout
 * is set by appending and cancelled by unlinking, both O(1), and the thread only ever waits for the first one.
 *
 * <p>Why not a ScheduledThreadPoolExecutor: its priority heap costs O(log n) with compareTo at every schedule and
 * every cancel (nearly every run is cancelled: it ends in time), and its thread was woken whenever the heap ran
 * empty and filled again. bench drain of 300,000 at claims of 500 x 2,000, JFR of the worker: scheduling and
 * cancelling were 18% of the samples of the task threads and the executor's thread 5% of the worker's CPU.
 */
final class HandlerTimeouts {

    /** One timeout set; {@link #cancel()} once its run ends. */
    final class Timeout {
        private final Runnable action;
        private final long deadline;
        private Timeout previous;
        private Timeout next;
        /** In the list: neither fired nor cancelled. Guarded by {@link #lock}. */
        private boolean pending = true;

        private Timeout(Runnable action, long deadline) {
            this.action = action;
            this.deadline = deadline;
        }

        /** Unless it fired already, it never will. */
        void cancel() {
            lock.lock();
            try {
                unlink(this);
            } finally {
                lock.unlock();
            }
        }
    }

    private final long limitNanos;
    private final ReentrantLock lock = new ReentrantLock();
    /** Signalled only to stop: see {@link #loop()}. */
    private final Condition changed = lock.newCondition();
    private final Thread thread;
    /** The pending timeouts, soonest first. Guarded by {@link #lock}, as are the fields below. */
    private Timeout first;
    private Timeout last;
    private int size;
    private boolean stopped;

    /** @param limit how long after {@link #schedule} an action runs, unless cancelled */
    HandlerTimeouts(Duration limit, String threadName) {
        // Past some 70 years a timeout is as good as none; the bound keeps the deadline arithmetic from overflowing.
        this.limitNanos = limit.compareTo(Duration.ofNanos(Long.MAX_VALUE / 4)) > 0 ? Long.MAX_VALUE / 4 : limit.toNanos();
        this.thread = Thread.ofPlatform().daemon().name(threadName).start(this::loop);
    }

    /** Runs the action on this object's thread once the limit has passed, unless cancelled first. */
    Timeout schedule(Runnable action) {
        lock.lock();
        try {
            // the deadline is taken under the lock, so the list stays in deadline order
            Timeout t = new Timeout(action, System.nanoTime() + limitNanos);
            t.previous = last;
            if (last == null) {
                first = t;
            } else {
                last.next = t;
            }
            last = t;
            size++;
            return t;
        } finally {
            lock.unlock();
        }
    }

    /** Timeouts neither fired nor cancelled. */
    int pending() {
        lock.lock();
        try {
            return size;
        } finally {
            lock.unlock();
        }
    }

    /** Stops the thread; pending timeouts never fire. */
    void shutdownNow() {
        lock.lock();
        try {
            stopped = true;
            changed.signal();
        } finally {
            lock.unlock();
        }
    }

    private void unlink(Timeout t) {
        if (!t.pending) {
            return;
        }
        t.pending = false;
        if (t.previous == null) {
            first = t.next;
        } else {
            t.previous.next = t.next;
        }
        if (t.next == null) {
            last = t.previous;
        } else {
            t.next.previous = t.previous;
        }
        t.previous = null;
        t.next = null;
        size--;
    }

    /**
     * Waits for the first deadline, or a whole limit when none is pending. A timeout set meanwhile expires no
     * sooner than either (all have the same length), so setting one never needs to wake this thread.
     */
    private void loop() {
        while (true) {
            Timeout due;
            lock.lock();
            try {
                while (true) {
                    if (stopped) {
                        return;
                    }
                    long left = first == null ? limitNanos : first.deadline - System.nanoTime();
                    if (first != null && left <= 0) {
                        due = first;
                        unlink(due);
                        break;
                    }
                    changed.awaitNanos(left);
                }
            } catch (InterruptedException e) {
                return;
            } finally {
                lock.unlock();
            }
            try {
                due.action.run();
            } catch (RuntimeException | OutOfMemoryError e) {
                // this thread must live on, or no handler would time out any more
                Worker.survive("a handler timeout broke off", e);
            }
        }
    }
}
