package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;

/** The worker's handler timeouts: each fires once, in the order set, unless cancelled first. */
class HandlerTimeoutsTest {

    @Test
    void timeouts_fire_in_the_order_they_were_set_and_cancelled_ones_never_fire() throws InterruptedException {
        HandlerTimeouts timeouts = new HandlerTimeouts(Duration.ofMillis(200), "test-timeouts");
        try {
            List<String> fired = new CopyOnWriteArrayList<>();
            CountDownLatch last = new CountDownLatch(1);
            HandlerTimeouts.Timeout first = timeouts.schedule(() -> fired.add("first"));
            HandlerTimeouts.Timeout second = timeouts.schedule(() -> fired.add("second"));
            HandlerTimeouts.Timeout third = timeouts.schedule(() -> fired.add("third"));
            timeouts.schedule(() -> {
                fired.add("fourth");
                last.countDown();
            });
            second.cancel();
            second.cancel(); // twice is harmless
            assertThat(timeouts.pending()).isEqualTo(3);

            assertThat(last.await(10, TimeUnit.SECONDS)).as("the last timeout fired").isTrue();
            assertThat(fired).containsExactly("first", "third", "fourth");
            assertThat(timeouts.pending()).isZero();
            first.cancel(); // after firing: nothing to undo
            third.cancel();
            assertThat(fired).hasSize(3);
        } finally {
            timeouts.shutdownNow();
        }
    }

    @Test
    void a_timeout_set_after_the_list_ran_empty_still_fires() throws InterruptedException {
        HandlerTimeouts timeouts = new HandlerTimeouts(Duration.ofMillis(100), "test-timeouts");
        try {
            CountDownLatch once = new CountDownLatch(1);
            timeouts.schedule(once::countDown);
            assertThat(once.await(10, TimeUnit.SECONDS)).isTrue();
            // the thread now waits a whole limit with nothing pending; a new timeout is due no sooner than that
            CountDownLatch again = new CountDownLatch(1);
            timeouts.schedule(again::countDown);
            assertThat(again.await(10, TimeUnit.SECONDS)).isTrue();
        } finally {
            timeouts.shutdownNow();
        }
    }
}
