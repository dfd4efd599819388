package io.tasktable.testing;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Small helpers for reading and forging state in tests, with bind parameters. */
public final class Sql {

    private Sql() {
    }

    /** The rows of a query, each as column name to value. */
    public static List<Map<String, Object>> rows(Connection c, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                List<Map<String, Object>> rows = new ArrayList<>();
                while (rs.next()) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    for (int col = 1; col <= rs.getMetaData().getColumnCount(); col++) {
                        row.put(rs.getMetaData().getColumnLabel(col), rs.getObject(col));
                    }
                    rows.add(row);
                }
                return rows;
            }
        }
    }

    /** The single value of a one-row, one-column query. */
    public static Object value(Connection c, String sql, Object... args) throws SQLException {
        List<Map<String, Object>> rows = rows(c, sql, args);
        if (rows.size() != 1 || rows.getFirst().size() != 1) {
            throw new IllegalStateException("expected one value from " + sql + ", got " + rows);
        }
        return rows.getFirst().values().iterator().next();
    }

    public static long count(Connection c, String sql, Object... args) throws SQLException {
        return ((Number) value(c, sql, args)).longValue();
    }

    public static int update(Connection c, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            return ps.executeUpdate();
        }
    }

    /** The row of one task, column name to value. */
    public static Map<String, Object> task(Connection c, long id) throws SQLException {
        List<Map<String, Object>> rows = rows(c, "SELECT * FROM tasktable.task WHERE id = ?", id);
        if (rows.isEmpty()) {
            throw new IllegalStateException("no task " + id);
        }
        return rows.getFirst();
    }

    public static String state(Connection c, long id) throws SQLException {
        return (String) value(c, "SELECT state::text FROM tasktable.task WHERE id = ?", id);
    }
}
