package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

import io.tasktable.testing.TestDatabase;

/** The LISTEN connection's sockets announce a notification's bytes while pgjdbc is still reading them. */
@ExtendWith(TestDatabase.Extension.class)
class ArrivalSocketFactoryTest {

    private final TestDatabase db;

    ArrivalSocketFactoryTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void a_notification_arriving_on_a_listen_connection_runs_the_callback() throws Exception {
        AtomicInteger arrivals = new AtomicInteger();
        String key = ArrivalSocketFactory.register(arrivals::incrementAndGet);
        try (ConnectionPool pool = ConnectionPool.open(db.url(), "tasktable-arrival-test", 1);
             Connection listening = pool.openDedicated(ArrivalSocketFactory.properties(key));
             Connection notifying = db.connect()) {
            try (Statement s = listening.createStatement()) {
                s.execute("LISTEN " + Listener.CHANNEL);
            }
            assertThat(arrivals.get()).as("the connection's own answers arrived through the socket").isPositive();
            arrivals.set(0);
            CompletableFuture<PGNotification[]> received = CompletableFuture.supplyAsync(() -> {
                try {
                    return listening.unwrap(PGConnection.class).getNotifications(10_000);
                } catch (SQLException e) {
                    throw new IllegalStateException(e);
                }
            });
            try (Statement s = notifying.createStatement()) {
                s.execute("NOTIFY " + Listener.CHANNEL + ", 'default'");
            }
            await().atMost(Duration.ofSeconds(10)).until(() -> arrivals.get() > 0);
            PGNotification[] notifications = received.get(10, TimeUnit.SECONDS);
            assertThat(notifications).extracting(PGNotification::getParameter).containsExactly("default");
        } finally {
            ArrivalSocketFactory.unregister(key);
        }
    }
}
