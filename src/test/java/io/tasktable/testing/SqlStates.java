package io.tasktable.testing;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.sql.SQLException;

import org.assertj.core.api.ThrowableAssert.ThrowingCallable;

/** Asserts the SQLSTATE of an error, whether it arrives as a JDBC or a jOOQ exception. */
public final class SqlStates {

    private SqlStates() {
    }

    public static void assertSqlState(String expected, ThrowingCallable call) {
        assertThatThrownBy(call)
                .satisfies(e -> org.assertj.core.api.Assertions.assertThat(sqlState(e))
                        .as("SQLSTATE of %s", e)
                        .isEqualTo(expected));
    }

    public static String sqlState(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof SQLException sql && sql.getSQLState() != null) {
                return sql.getSQLState();
            }
        }
        return null;
    }
}
