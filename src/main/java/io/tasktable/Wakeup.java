package io.tasktable;

import java.time.Duration;

/**
 * A latch that remembers one signal: the claim loops sleep on it, NOTIFY and freed capacity wake one of them.
 * Once stopped, it never blocks again, so every claim loop sees the worker closing at once.
 */
final class Wakeup {

    private boolean signaled;
    private boolean stopped;

    synchronized void signal() {
        signaled = true;
        notifyAll();
    }

    synchronized void stop() {
        stopped = true;
        notifyAll();
    }

    /** Returns when signaled (consuming the signal), when stopped, or after the timeout. */
    synchronized void await(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        long left;
        while (!signaled && !stopped && (left = deadline - System.nanoTime()) > 0) {
            wait(Math.max(1, left / 1_000_000));
        }
        signaled = false;
    }
}
