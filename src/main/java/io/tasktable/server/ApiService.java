package io.tasktable.server;

import static io.tasktable.db.Tables.QUEUE;
import static io.tasktable.db.Tables.QUEUE_STATS;
import static io.tasktable.db.Tables.TASK;
import static io.tasktable.db.Tables.TASK_THROUGHPUT;

import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.jooq.Condition;
import org.jooq.DSLContext;
import org.jooq.Field;
import org.jooq.Record;
import org.jooq.Select;
import org.jooq.Table;
import org.jooq.impl.DSL;
import org.jooq.types.YearToSecond;

import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.HttpRules;
import io.helidon.webserver.http.HttpService;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;

import io.tasktable.NewTask;
import io.tasktable.TaskClient;
import io.tasktable.db.Routines;
import io.tasktable.db.enums.TaskState;
import io.tasktable.db.tables.records.QueueRecord;
import io.tasktable.db.tables.records.TaskRecord;

/**
 * The JSON API under {@code /api}. Each handler parses its input, makes one call (a tasktable function or
 * one simple query) and renders the result; SQL errors become problems in {@link SqlProblems}.
 */
final class ApiService implements HttpService {

    /** Keeps a page of tasks small enough to render at a glance and cheap to fetch. */
    static final int DEFAULT_PAGE = 50;
    static final int MAX_PAGE = 500;
    /** One request may enqueue at most this many tasks (enqueue_tasks handles more, but a request should stay short). */
    static final int MAX_BATCH = 10_000;

    private static final Set<String> TASK_FIELDS =
            Set.of("kind", "payload", "queue", "run_at", "priority", "max_attempts", "dedup_key");
    private static final Map<String, Field<?>> POLICY_FIELDS = Map.of(
            "paused", QUEUE.PAUSED, "max_attempts", QUEUE.MAX_ATTEMPTS, "backoff_base", QUEUE.BACKOFF_BASE,
            "backoff_factor", QUEUE.BACKOFF_FACTOR, "backoff_cap", QUEUE.BACKOFF_CAP,
            "backoff_jitter", QUEUE.BACKOFF_JITTER, "lease", QUEUE.LEASE, "retention", QUEUE.RETENTION,
            "dead_retention", QUEUE.DEAD_RETENTION);

    private final DSLContext db;
    private final long maxBodyBytes;
    private final TaskMetrics metrics;

    ApiService(DSLContext db, long maxBodyBytes, TaskMetrics metrics) {
        this.db = db;
        this.maxBodyBytes = maxBodyBytes;
        this.metrics = metrics;
    }

    @Override
    public void routing(HttpRules rules) {
        rules.post("/tasks", this::enqueue)
                .get("/tasks", this::listTasks)
                .get("/tasks/{id}", this::getTask)
                .post("/tasks/{id}/cancel", this::cancel)
                .post("/tasks/{id}/retry", this::retry)
                .get("/queues", this::listQueues)
                .post("/queues", this::createQueue)
                .get("/queues/{name}", this::getQueue)
                .patch("/queues/{name}", this::patchQueue)
                .get("/throughput", this::throughput);
    }

    // --- tasks ----------------------------------------------------------------------------------------

    private void enqueue(ServerRequest req, ServerResponse res) {
        JsonNode body = readJson(req);
        ObjectNode out = Json.MAPPER.createObjectNode();
        if (body.isArray()) {
            if (body.size() > MAX_BATCH) {
                throw Problem.badRequest("at most " + MAX_BATCH + " tasks per request, got " + body.size());
            }
            List<NewTask> tasks = new ArrayList<>();
            for (int i = 0; i < body.size(); i++) {
                tasks.add(newTask(body.get(i), "tasks[" + i + "]"));
            }
            List<Long> ids = SqlProblems.call(() -> TaskClient.enqueueAll(db, tasks));
            out.set("ids", Json.MAPPER.valueToTree(ids));
            metrics.enqueued(ids.size());
        } else {
            long id = SqlProblems.call(() -> TaskClient.enqueue(db, newTask(body, "body")));
            out.put("id", id);
            metrics.enqueued(1);
        }
        res.status(Status.CREATED_201);
        sendJson(res, out);
    }

    private static NewTask newTask(JsonNode node, String where) {
        if (!node.isObject()) {
            throw Problem.badRequest(where + " must be a JSON object with at least \"kind\"");
        }
        rejectUnknown(node, TASK_FIELDS, where);
        NewTask task = NewTask.of(text(node, "kind", where, true), payload(node, where));
        String queue = text(node, "queue", where, false);
        if (queue != null) {
            task = task.inQueue(queue);
        }
        String runAt = text(node, "run_at", where, false);
        if (runAt != null) {
            try {
                task = task.runAt(Instant.parse(runAt));
            } catch (DateTimeParseException e) {
                throw Problem.badRequest(where + ".run_at must be an ISO-8601 instant like 2030-01-01T09:00:00Z");
            }
        }
        Integer priority = integer(node, "priority", where);
        if (priority != null) {
            task = task.withPriority(priority);
        }
        Integer maxAttempts = integer(node, "max_attempts", where);
        if (maxAttempts != null) {
            task = task.withMaxAttempts(maxAttempts);
        }
        String dedupKey = text(node, "dedup_key", where, false);
        if (dedupKey != null) {
            task = task.withDedupKey(dedupKey);
        }
        return task;
    }

    private static String payload(JsonNode node, String where) {
        JsonNode payload = node.get("payload");
        if (payload == null || payload.isNull()) {
            return "{}";
        }
        if (!payload.isObject() && !payload.isArray()) {
            throw Problem.badRequest(where + ".payload must be a JSON object or array");
        }
        return payload.toString();
    }

    private void getTask(ServerRequest req, ServerResponse res) {
        long id = taskId(req);
        TaskRecord task = db.selectFrom(TASK).where(TASK.ID.eq(id)).fetchOne();
        if (task == null) {
            throw Problem.notFound("no task with id " + id);
        }
        sendJson(res, Json.task(task));
    }

    private void listTasks(ServerRequest req, ServerResponse res) {
        List<Condition> where = new ArrayList<>();
        req.query().first("queue").ifPresent(q -> where.add(TASK.QUEUE.eq(q)));
        req.query().first("kind").ifPresent(k -> where.add(TASK.KIND.eq(k)));
        // Inline (a closed set of values, checked by state()): a plan made for a bound state could not use the
        // partial index of dead and cancelled tasks (V13), and would read the succeeded history to find them.
        TaskState state = req.query().first("state").map(ApiService::state).orElse(null);
        if (state != null) {
            where.add(TASK.STATE.eq(DSL.inline(state)));
        }
        req.query().first("before").ifPresent(b -> where.add(TASK.ID.lt(number(b, "before"))));
        int limit = req.query().first("limit").map(l -> (int) number(l, "limit")).orElse(DEFAULT_PAGE);
        if (limit < 1 || limit > MAX_PAGE) {
            throw Problem.badRequest("limit must be between 1 and " + MAX_PAGE);
        }
        // Keyset pagination, newest first: the next page starts below the last id of this one.
        List<TaskRecord> page = taskPage(db, where, state, limit + 1).fetch();
        ObjectNode out = Json.MAPPER.createObjectNode();
        ArrayNode tasks = out.putArray("tasks");
        page.stream().limit(limit).forEach(t -> tasks.add(Json.task(t)));
        if (page.size() > limit) {
            out.put("next_before", page.get(limit - 1).getId());
        } else {
            out.putNull("next_before");
        }
        sendJson(res, out);
    }

    /**
     * Tasks matching {@code where}, newest first (highest id), at most {@code rows}. Running tasks are selected first
     * and sorted afterwards: they are the fewest (at most the workers' concurrency, found through task_lease_idx) and
     * the oldest ids, so reading task_pkey backwards for them stepped over every queued task: a page of 51 among
     * 10,000 running and 990,000 queued read 17,640 pages in 257 ms, and reads 156 in 7.9 ms this way. The planner
     * cannot know that running tasks sit at the low end of the ids. The other states are read by id: queued and
     * succeeded tasks are the newest ids, dead and cancelled ones have an index of their own (V13).
     */
    static Select<TaskRecord> taskPage(DSLContext db, List<Condition> where, TaskState state, int rows) {
        if (state == TaskState.running) {
            // With an OFFSET the subquery is planned on its own, for its condition only, not in id order.
            Table<TaskRecord> running = db.selectFrom(TASK).where(where).offset(DSL.inline(0)).asTable(TASK.getName());
            return db.selectFrom(running).orderBy(running.field(TASK.ID).desc()).limit(rows);
        }
        return db.selectFrom(TASK).where(where).orderBy(TASK.ID.desc()).limit(rows);
    }

    private void cancel(ServerRequest req, ServerResponse res) {
        long id = taskId(req);
        SqlProblems.call(() -> Routines.cancelTask(db.configuration(), id));
        getTask(req, res);
    }

    private void retry(ServerRequest req, ServerResponse res) {
        long id = taskId(req);
        SqlProblems.call(() -> Routines.retryTask(db.configuration(), id));
        getTask(req, res);
    }

    // --- queues ---------------------------------------------------------------------------------------

    private List<ObjectNode> queues(Condition condition) {
        return db.select().from(QUEUE).join(QUEUE_STATS).on(QUEUE_STATS.QUEUE.eq(QUEUE.NAME))
                .where(condition).orderBy(QUEUE.NAME)
                .fetch(r -> Json.queue(r.into(QUEUE), r.into(QUEUE_STATS)));
    }

    private void listQueues(ServerRequest req, ServerResponse res) {
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.set("queues", Json.MAPPER.valueToTree(queues(DSL.noCondition())));
        sendJson(res, out);
    }

    private void getQueue(ServerRequest req, ServerResponse res) {
        String name = req.path().pathParameters().get("name");
        List<ObjectNode> found = queues(QUEUE.NAME.eq(name));
        if (found.isEmpty()) {
            throw Problem.notFound("no queue named '" + name + "'");
        }
        sendJson(res, found.getFirst());
    }

    private void createQueue(ServerRequest req, ServerResponse res) {
        JsonNode body = readJson(req);
        if (!body.isObject()) {
            throw Problem.badRequest("body must be a JSON object with \"name\" and optional policy fields");
        }
        String name = text(body, "name", "body", true);
        ObjectNode policy = ((ObjectNode) body).deepCopy();
        policy.remove("name");
        Map<Field<?>, Object> values = policyValues(policy);
        values.put(QUEUE.NAME, name);
        SqlProblems.call(() -> db.insertInto(QUEUE).set(values).execute());
        res.status(Status.CREATED_201);
        sendJson(res, queues(QUEUE.NAME.eq(name)).getFirst());
    }

    private void patchQueue(ServerRequest req, ServerResponse res) {
        String name = req.path().pathParameters().get("name");
        JsonNode body = readJson(req);
        if (!body.isObject() || body.isEmpty()) {
            throw Problem.badRequest("body must be a JSON object with one or more of " + POLICY_FIELDS.keySet());
        }
        Map<Field<?>, Object> values = policyValues(body);
        QueueRecord updated = SqlProblems.call(() ->
                db.update(QUEUE).set(values).where(QUEUE.NAME.eq(name)).returning().fetchOne());
        if (updated == null) {
            throw Problem.notFound("no queue named '" + name + "'");
        }
        getQueue(req, res);
    }

    /** Policy fields of a JSON object as column values; intervals are given in seconds. */
    private static Map<Field<?>, Object> policyValues(JsonNode body) {
        rejectUnknown(body, POLICY_FIELDS.keySet(), "body");
        Map<Field<?>, Object> values = new HashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = body.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            Field<?> column = POLICY_FIELDS.get(e.getKey());
            JsonNode v = e.getValue();
            Object value;
            if (column.getType() == Boolean.class && v.isBoolean()) {
                value = v.booleanValue();
            } else if (column.getType() == Integer.class && v.isIntegralNumber() && v.canConvertToInt()) {
                value = v.intValue();
            } else if (column.getType() == Double.class && v.isNumber()) {
                value = v.doubleValue();
            } else if (column.getType() == YearToSecond.class && v.isNumber()) {
                value = YearToSecond.valueOf(Duration.ofNanos(Math.round(v.doubleValue() * 1e9)));
            } else {
                throw Problem.badRequest(e.getKey() + " must be " + expected(column.getType()));
            }
            values.put(column, value);
        }
        return values;
    }

    private static String expected(Class<?> type) {
        if (type == Boolean.class) {
            return "true or false";
        }
        if (type == Integer.class) {
            return "an integer";
        }
        return type == YearToSecond.class ? "a number of seconds" : "a number";
    }

    private void throughput(ServerRequest req, ServerResponse res) {
        ObjectNode out = Json.MAPPER.createObjectNode();
        ArrayNode rows = out.putArray("minutes");
        for (Record r : db.selectFrom(TASK_THROUGHPUT).orderBy(TASK_THROUGHPUT.MINUTE, TASK_THROUGHPUT.QUEUE).fetch()) {
            ObjectNode row = rows.addObject();
            row.put("queue", r.get(TASK_THROUGHPUT.QUEUE));
            row.put("minute", r.get(TASK_THROUGHPUT.MINUTE).toInstant().toString());
            row.put("succeeded", r.get(TASK_THROUGHPUT.SUCCEEDED));
            row.put("dead", r.get(TASK_THROUGHPUT.DEAD));
            row.put("cancelled", r.get(TASK_THROUGHPUT.CANCELLED));
        }
        sendJson(res, out);
    }

    // --- request and response plumbing ------------------------------------------------------------------

    private JsonNode readJson(ServerRequest req) {
        boolean json = req.headers().contentType()
                .map(type -> type.mediaType().subtype().equals("json") || type.mediaType().subtype().endsWith("+json"))
                .orElse(false);
        if (!json) {
            throw new Problem(Status.UNSUPPORTED_MEDIA_TYPE_415, "unsupported-media-type",
                    "send the body as JSON with Content-Type: application/json");
        }
        byte[] bytes = readAtMost(req, maxBodyBytes);
        try {
            JsonNode node = Json.MAPPER.readTree(bytes);
            if (node == null || node.isMissingNode()) {
                throw Problem.badRequest("the request body is empty; send JSON");
            }
            return node;
        } catch (JsonProcessingException e) {
            throw Problem.badRequest("malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw Problem.badRequest("unreadable body: " + e.getMessage());
        }
    }

    /** Reads the body, answering 413 as soon as it is larger than the limit instead of buffering it all. */
    static byte[] readAtMost(ServerRequest req, long limit) {
        if (req.headers().contentLength().orElse(0) > limit) {
            throw tooLarge(limit);
        }
        try (InputStream in = req.content().inputStream()) {
            byte[] bytes = in.readNBytes((int) limit + 1);
            if (bytes.length > limit) {
                throw tooLarge(limit);
            }
            return bytes;
        } catch (IOException e) {
            throw Problem.badRequest("unreadable body: " + e.getMessage());
        }
    }

    static Problem tooLarge(long limit) {
        return new Problem(Status.REQUEST_ENTITY_TOO_LARGE_413, "body-too-large",
                "request bodies are limited to " + limit + " bytes");
    }

    private static void sendJson(ServerResponse res, JsonNode body) {
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(body.toString());
    }

    private static void rejectUnknown(JsonNode node, Set<String> known, String where) {
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!known.contains(name)) {
                throw Problem.badRequest(where + " has an unknown field \"" + name + "\"; known fields: "
                        + known.stream().sorted().collect(Collectors.joining(", ")));
            }
        }
    }

    private static String text(JsonNode node, String field, String where, boolean required) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw Problem.badRequest(where + " is missing the field \"" + field + "\"");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw Problem.badRequest(where + "." + field + " must be a string");
        }
        return v.textValue();
    }

    private static Integer integer(JsonNode node, String field, String where) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw Problem.badRequest(where + "." + field + " must be an integer");
        }
        return v.intValue();
    }

    private static long taskId(ServerRequest req) {
        return number(req.path().pathParameters().get("id"), "task id");
    }

    private static long number(String text, String what) {
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw Problem.badRequest(what + " must be an integer, got '" + text + "'");
        }
    }

    private static TaskState state(String text) {
        for (TaskState s : TaskState.values()) {
            if (s.getLiteral().equals(text)) {
                return s;
            }
        }
        throw Problem.badRequest("state must be one of " + Arrays.stream(TaskState.values())
                .map(TaskState::getLiteral).collect(Collectors.joining(", ")));
    }
}
