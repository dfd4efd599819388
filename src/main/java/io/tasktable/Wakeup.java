package io.tasktable;

import java.time.Duration;

/** A latch that remembers one signal: the claim loop sleeps on it, NOTIFY and freed capacity wake it. */
final class Wakeup {

    private boolean signaled;

    synchronized void signal() {
        signaled = true;
        notifyAll();
    }

    /** Returns when signaled (consuming the signal) or after the timeout. */
    synchronized void await(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        long left;
        while (!signaled && (left = deadline - System.nanoTime()) > 0) {
            wait(Math.max(1, left / 1_000_000));
        }
        signaled = false;
    }
}
