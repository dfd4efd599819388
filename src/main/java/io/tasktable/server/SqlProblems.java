package io.tasktable.server;

import java.util.function.Supplier;

import org.jooq.exception.DataAccessException;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

import io.helidon.http.Status;

/** Maps the SQL API's errors to HTTP problems: the SQLSTATE decides the status, the message and hint the detail. */
final class SqlProblems {

    /** Helidon names no constant for 422; RFC 9110 calls it Unprocessable Content. */
    static final Status UNPROCESSABLE = Status.create(422, "Unprocessable Content");

    private SqlProblems() {
    }

    static <T> T call(Supplier<T> sql) {
        try {
            return sql.get();
        } catch (DataAccessException e) {
            throw problem(e);
        }
    }

    static Problem problem(DataAccessException e) {
        String state = e.sqlState();
        String detail = detail(e);
        return switch (state) {
            case "TT010" -> new Problem(Status.NOT_FOUND_404, "unknown-task", detail);
            case "TT011" -> new Problem(Status.CONFLICT_409, "illegal-state-change", detail);
            case "TT004" -> new Problem(UNPROCESSABLE, "unknown-queue", detail);
            case "23505" -> new Problem(Status.CONFLICT_409, "already-exists", detail);
            case "23514", "23502" -> new Problem(UNPROCESSABLE, "invalid-value", detail);
            default -> state.startsWith("TT")
                    ? new Problem(UNPROCESSABLE, "invalid-task", detail)
                    // class 22, data exception: a value PostgreSQL cannot store, e.g. \u0000 in a jsonb string
                    : state.startsWith("22")
                    ? new Problem(UNPROCESSABLE, "invalid-value", detail)
                    : state.startsWith("08")
                            ? new Problem(Status.SERVICE_UNAVAILABLE_503, "database-unavailable", "the database is unreachable")
                            : unexpected(e);
        };
    }

    private static Problem unexpected(DataAccessException e) {
        throw e;
    }

    private static String detail(DataAccessException e) {
        PSQLException pg = e.getCause(PSQLException.class);
        if (pg == null || pg.getServerErrorMessage() == null) {
            return e.getMessage();
        }
        ServerErrorMessage m = pg.getServerErrorMessage();
        String text = m.getMessage().replaceFirst("^tasktable: ", "");
        if (m.getConstraint() != null) {
            text += " (constraint " + m.getConstraint() + ")";
        }
        return m.getHint() == null ? text : text + ". " + m.getHint();
    }
}
