package io.tasktable;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.Properties;
import java.util.Set;

import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Listens on channel {@code tasktable}, where enqueue announces ready tasks with the queue name, and wakes
 * the claim loop. Uses its own autocommit connection outside the pool (a pooled one would be handed to
 * others while listening). Reconnects and LISTENs again after a connection loss, and then wakes the claim
 * loop once, since whatever was announced meanwhile is lost; polling covers the rest.
 *
 * <p>A worker of all queues is woken as the notification's bytes arrive (see {@link ArrivalSocketFactory}), about
 * 1 ms before pgjdbc returns it. A worker of named queues is woken once the queue name is read, so that traffic
 * on other queues never makes it claim in vain.
 */
final class Listener {

    private static final Logger LOG = LoggerFactory.getLogger(Listener.class);

    static final String CHANNEL = "tasktable";
    /** How long one wait for notifications blocks: bounds how long close() waits for this thread. */
    static final Duration WAIT = Duration.ofMillis(250);

    private final ConnectionPool pool;
    private final Set<String> queues;
    private final Wakeup wakeup;
    private final Thread thread;
    /** Driver properties of the LISTEN connection (the arrival callback for a worker of all queues). */
    private final Properties connectionProperties;
    private final String arrivalKey;
    private volatile boolean closing;

    /** @param queues the queues worth waking for; empty means all */
    Listener(ConnectionPool pool, Set<String> queues, Wakeup wakeup, String workerId) {
        this.pool = pool;
        this.queues = queues;
        this.wakeup = wakeup;
        this.arrivalKey = queues.isEmpty() ? ArrivalSocketFactory.register(wakeup::signal) : null;
        this.connectionProperties = arrivalKey != null ? ArrivalSocketFactory.properties(arrivalKey) : new Properties();
        this.thread = Thread.ofPlatform().daemon().name("tasktable-listen-" + workerId).unstarted(this::loop);
    }

    void start() {
        thread.start();
    }

    void close() throws InterruptedException {
        closing = true;
        thread.join();
        if (arrivalKey != null) {
            ArrivalSocketFactory.unregister(arrivalKey);
        }
    }

    private void loop() {
        Retrying retrying = new Retrying();
        Connection connection = null;
        boolean lost = false;
        while (!closing) {
            try {
                if (connection == null) {
                    connection = listen();
                    if (lost) {
                        LOG.info("LISTEN connection restored");
                    }
                    lost = false;
                    retrying.reset();
                    wakeup.signal();
                }
                PGNotification[] notifications = connection.unwrap(PGConnection.class)
                        .getNotifications((int) WAIT.toMillis());
                // a worker of all queues was woken as the bytes arrived; a second signal would only cost a vain claim
                if (notifications != null && arrivalKey == null) {
                    for (PGNotification n : notifications) {
                        if (queues.contains(n.getParameter())) {
                            wakeup.signal();
                        }
                    }
                }
            } catch (SQLException e) {
                closeQuietly(connection);
                connection = null;
                Duration delay = retrying.nextDelay();
                if (!lost) {
                    LOG.warn("LISTEN connection lost, reconnecting (polling meanwhile): {}", e.getMessage());
                }
                lost = true;
                try {
                    Thread.sleep(delay);
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        }
        closeQuietly(connection);
    }

    private Connection listen() throws SQLException {
        Connection connection = pool.openDedicated(connectionProperties);
        try (Statement statement = connection.createStatement()) {
            connection.setAutoCommit(true);
            statement.execute("LISTEN " + CHANNEL);
            return connection;
        } catch (SQLException e) {
            closeQuietly(connection);
            throw e;
        }
    }

    private static void closeQuietly(Connection connection) {
        if (connection != null) {
            try {
                connection.close();
            } catch (SQLException ignored) {
                // the connection is being dropped because it failed; nothing more to learn from it
            }
        }
    }
}
