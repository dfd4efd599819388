package io.tasktable.cli;

import java.sql.SQLException;

import javax.sql.DataSource;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;


import io.tasktable.DatabaseUrl;

/** What the commands share: exit codes, error lines, the database connection. */
final class Cli {

    static final int EXIT_OK = 0;
    /** The command ran and failed (database unreachable, migration refused, ...). */
    static final int EXIT_FAILURE = 1;
    /** The command line itself was wrong. */
    static final int EXIT_USAGE = 2;

    private Cli() {
    }

    /** A data source for DATABASE_URL; connection errors surface at first use. */
    static DataSource dataSource(DatabaseUrl url) {
        return url.dataSource("tasktable");
    }

    /** The most useful single line about a failure: the outermost SQL error's message, else the root cause's. */
    static String oneLine(Throwable e) {
        Throwable best = null;
        Throwable root = e;
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (best == null && t instanceof SQLException) {
                best = t;
            }
            root = t;
        }
        if (best instanceof PSQLException pg && pg.getServerErrorMessage() != null) {
            ServerErrorMessage server = pg.getServerErrorMessage();
            String text = server.getMessage().replaceFirst("^tasktable: ", "");
            return server.getHint() == null ? text : text + " (" + server.getHint() + ")";
        }
        Throwable chosen = best != null ? best : root;
        String message = chosen.getMessage() == null ? chosen.getClass().getSimpleName() : chosen.getMessage();
        return message.lines().findFirst().orElse(message).strip();
    }
}
