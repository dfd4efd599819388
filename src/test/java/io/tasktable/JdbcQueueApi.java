package io.tasktable;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The SQL API through plain JDBC: statements as any language would send them, no jOOQ. Intervals go as
 * ISO 8601 text (PT30S), JSON as text cast to jsonb, batches as arrays.
 */
final class JdbcQueueApi implements QueueApi {

    private static void setInterval(PreparedStatement ps, int index, Duration d) throws SQLException {
        ps.setString(index, d == null ? null : d.toString());
    }

    private static void setNullableInt(PreparedStatement ps, int index, Integer value) throws SQLException {
        if (value == null) {
            ps.setNull(index, Types.INTEGER);
        } else {
            ps.setInt(index, value);
        }
    }

    private static List<Long> longs(ResultSet rs) throws SQLException {
        rs.next();
        Array array = rs.getArray(1);
        return Arrays.asList((Long[]) array.getArray());
    }

    @Override
    public long enqueue(Connection c, Spec s) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT tasktable.enqueue_task(?, ?::jsonb, ?, ?, ?, ?, ?)")) {
            ps.setString(1, s.kind());
            ps.setString(2, s.payload());
            ps.setString(3, s.queue());
            ps.setObject(4, s.runAt());
            setNullableInt(ps, 5, s.priority());
            setNullableInt(ps, 6, s.maxAttempts());
            ps.setString(7, s.dedupKey());
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    @Override
    public List<Long> enqueueAll(Connection c, List<Spec> specs) throws SQLException {
        // The documented way for drivers without composite types: a JSON array of specs.
        StringBuilder json = new StringBuilder("[");
        for (Spec s : specs) {
            if (json.length() > 1) {
                json.append(',');
            }
            json.append("{\"kind\":").append(quote(s.kind()))
                    .append(",\"payload\":").append(s.payload() == null ? "null" : s.payload())
                    .append(",\"queue\":").append(quote(s.queue()))
                    .append(",\"run_at\":").append(s.runAt() == null ? "null" : quote(s.runAt().toString()))
                    .append(",\"priority\":").append(s.priority())
                    .append(",\"max_attempts\":").append(s.maxAttempts())
                    .append(",\"dedup_key\":").append(quote(s.dedupKey()))
                    .append('}');
        }
        json.append(']');
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.enqueue_tasks_json(?::jsonb)")) {
            ps.setString(1, json.toString());
            try (ResultSet rs = ps.executeQuery()) {
                return longs(rs);
            }
        }
    }

    private static String quote(String s) {
        if (s == null) {
            return "null";
        }
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    @Override
    public List<Claimed> claim(Connection c, int n, String worker, List<String> queues, Duration lease)
            throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT id, kind, payload::text, queue, attempt, priority FROM tasktable.claim_tasks(?, ?, ?, ?::interval)")) {
            ps.setInt(1, n);
            ps.setString(2, worker);
            ps.setArray(3, queues == null ? null : c.createArrayOf("text", queues.toArray()));
            setInterval(ps, 4, lease);
            List<Claimed> claimed = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    claimed.add(new Claimed(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4),
                            rs.getInt(5), rs.getInt(6)));
                }
            }
            return claimed;
        }
    }

    @Override
    public boolean complete(Connection c, long id, int attempt, String resultJson) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.complete_task(?, ?, ?::jsonb)")) {
            ps.setLong(1, id);
            ps.setInt(2, attempt);
            ps.setString(3, resultJson);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        }
    }

    @Override
    public List<Long> completeAll(Connection c, long[] ids, int[] attempts) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.complete_tasks(?, ?)")) {
            ps.setArray(1, c.createArrayOf("bigint", Arrays.stream(ids).boxed().toArray()));
            ps.setArray(2, c.createArrayOf("integer", Arrays.stream(attempts).boxed().toArray()));
            try (ResultSet rs = ps.executeQuery()) {
                return longs(rs);
            }
        }
    }

    @Override
    public String fail(Connection c, long id, int attempt, String error, boolean retryable, OffsetDateTime retryAt)
            throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.fail_task(?, ?, ?, ?, ?)::text")) {
            ps.setLong(1, id);
            ps.setInt(2, attempt);
            ps.setString(3, error);
            ps.setBoolean(4, retryable);
            ps.setObject(5, retryAt);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getString(1);
            }
        }
    }

    @Override
    public List<Long> extendLease(Connection c, long[] ids, int[] attempts, Duration by) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.extend_lease(?, ?, ?::interval)")) {
            ps.setArray(1, c.createArrayOf("bigint", Arrays.stream(ids).boxed().toArray()));
            ps.setArray(2, c.createArrayOf("integer", Arrays.stream(attempts).boxed().toArray()));
            setInterval(ps, 3, by);
            try (ResultSet rs = ps.executeQuery()) {
                return longs(rs);
            }
        }
    }

    @Override
    public boolean snooze(Connection c, long id, int attempt, Duration delay) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.snooze_task(?, ?, ?::interval)")) {
            ps.setLong(1, id);
            ps.setInt(2, attempt);
            setInterval(ps, 3, delay);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        }
    }

    @Override
    public String cancel(Connection c, long id) throws SQLException {
        return text(c, "SELECT tasktable.cancel_task(?)::text", id);
    }

    @Override
    public String retry(Connection c, long id) throws SQLException {
        return text(c, "SELECT tasktable.retry_task(?)::text", id);
    }

    private static String text(Connection c, String sql, long id) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setLong(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getString(1);
            }
        }
    }

    @Override
    public int rescueExpired(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.rescue_expired_tasks()");
             ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getInt(1);
        }
    }

    @Override
    public int prune(Connection c, int maxRows) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT tasktable.prune_tasks(?)")) {
            ps.setInt(1, maxRows);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getInt(1);
            }
        }
    }
}
