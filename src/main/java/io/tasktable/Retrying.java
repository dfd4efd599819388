package io.tasktable;

import java.io.IOException;
import java.sql.SQLException;
import java.sql.SQLRecoverableException;
import java.sql.SQLTransientException;
import java.time.Duration;

/** Telling a passing database outage from a real error, and waiting between attempts. */
final class Retrying {

    /** The first retry comes soon: most outages are one killed connection, replaced at once. */
    static final Duration FIRST_DELAY = Duration.ofMillis(50);
    /** Retries slow down to this, so a down database sees a trickle of attempts, not a storm. */
    static final Duration MAX_DELAY = Duration.ofSeconds(2);

    private Duration next = FIRST_DELAY;

    /** The delay before the next attempt; each call doubles it up to {@link #MAX_DELAY}. */
    Duration nextDelay() {
        Duration delay = next;
        next = next.multipliedBy(2).compareTo(MAX_DELAY) > 0 ? MAX_DELAY : next.multipliedBy(2);
        return delay;
    }

    void reset() {
        next = FIRST_DELAY;
    }

    /** One line for a log: the database's own message (jOOQ's wrapper repeats the whole statement). */
    static String summary(Throwable error) {
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof SQLException && t.getMessage() != null) {
                return t.getMessage().lines().findFirst().orElse("").strip();
            }
        }
        return String.valueOf(error.getMessage());
    }

    /**
     * True when trying again may succeed: the connection broke (SQLSTATE class 08, an I/O error), the server
     * is shutting down or restarting (57P), is out of resources (53), the transaction lost a serialization
     * race (40), or the pool had no connection in time.
     */
    static boolean isTransient(Throwable error) {
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof SQLTransientException || t instanceof SQLRecoverableException || t instanceof IOException) {
                return true;
            }
            if (t instanceof SQLException sql && sql.getSQLState() != null) {
                String state = sql.getSQLState();
                if (state.startsWith("08") || state.startsWith("57P") || state.startsWith("53") || state.startsWith("40")) {
                    return true;
                }
            }
        }
        return false;
    }
}
