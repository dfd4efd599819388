package io.tasktable.server;

import java.time.OffsetDateTime;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.jooq.JSONB;
import org.jooq.types.YearToSecond;

import io.tasktable.db.tables.records.QueueRecord;
import io.tasktable.db.tables.records.QueueStatsRecord;
import io.tasktable.db.tables.records.TaskRecord;

/** JSON shapes of the HTTP API, built from the generated records. */
final class Json {

    static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {
    }

    static ObjectNode task(TaskRecord t) {
        ObjectNode n = MAPPER.createObjectNode();
        n.put("id", t.getId());
        n.put("queue", t.getQueue());
        n.put("kind", t.getKind());
        n.set("payload", parse(t.getPayload()));
        n.put("state", t.getState().getLiteral());
        n.put("priority", t.getPriority());
        n.put("attempt", t.getAttempt());
        if (t.getMaxAttempts() == null) {
            n.putNull("max_attempts");
        } else {
            n.put("max_attempts", t.getMaxAttempts());
        }
        n.put("run_at", time(t.getRunAt()));
        n.put("dedup_key", t.getDedupKey());
        n.put("worker", t.getWorker());
        n.put("lease_expires_at", time(t.getLeaseExpiresAt()));
        n.put("last_error", t.getLastError());
        n.set("result", parse(t.getResult()));
        n.put("created_at", time(t.getCreatedAt()));
        n.put("started_at", time(t.getStartedAt()));
        n.put("finished_at", time(t.getFinishedAt()));
        return n;
    }

    static ObjectNode queue(QueueRecord q, QueueStatsRecord stats) {
        ObjectNode n = MAPPER.createObjectNode();
        n.put("name", q.getName());
        n.put("paused", q.getPaused());
        n.put("max_attempts", q.getMaxAttempts());
        n.put("backoff_base", seconds(q.getBackoffBase()));
        n.put("backoff_factor", q.getBackoffFactor());
        n.put("backoff_cap", seconds(q.getBackoffCap()));
        n.put("backoff_jitter", q.getBackoffJitter());
        n.put("lease", seconds(q.getLease()));
        n.put("retention", seconds(q.getRetention()));
        n.put("dead_retention", seconds(q.getDeadRetention()));
        ObjectNode counts = n.putObject("counts");
        counts.put("queued", stats.getQueued());
        counts.put("ready", stats.getReady());
        counts.put("scheduled", stats.getQueued() - stats.getReady());
        counts.put("running", stats.getRunning());
        counts.put("succeeded", stats.getSucceeded());
        counts.put("dead", stats.getDead());
        counts.put("cancelled", stats.getCancelled());
        YearToSecond age = stats.getOldestReadyAge();
        if (age == null) {
            n.putNull("oldest_ready_age_s");
        } else {
            n.put("oldest_ready_age_s", age.toDuration().toMillis() / 1000.0);
        }
        return n;
    }

    /** Intervals travel as seconds (a number), e.g. "lease": 30. */
    static double seconds(YearToSecond interval) {
        return interval.toDuration().toNanos() / 1e9;
    }

    private static JsonNode parse(JSONB json) {
        if (json == null) {
            return MAPPER.nullNode();
        }
        try {
            return MAPPER.readTree(json.data());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException("the database returned invalid JSON", e);
        }
    }

    private static String time(OffsetDateTime t) {
        return t == null ? null : t.toInstant().toString();
    }
}
