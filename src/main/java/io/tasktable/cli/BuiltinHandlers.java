package io.tasktable.cli;

import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;

import io.tasktable.NonRetryableException;
import io.tasktable.TaskHandler;
import io.tasktable.TaskResult;

/** The task kinds {@code tasktable work} runs out of the box. */
final class BuiltinHandlers {

    private BuiltinHandlers() {
    }

    static Map<String, TaskHandler> all() {
        return Map.of(
                "noop", (task, context) -> TaskResult.success(),
                "sleep", (task, context) -> {
                    Thread.sleep(nonNegativeLong(task.payload(), "ms"));
                    return TaskResult.success();
                },
                "fail", (task, context) -> {
                    throw new IllegalStateException("task " + task.id() + " of kind 'fail' fails on purpose"
                            + task.payload().path("message").asText("").transform(m -> m.isEmpty() ? "" : ": " + m));
                },
                // For `bench latency`: the handler's start time (epoch microseconds) as the result.
                "stamp", (task, context) -> TaskResult.success(
                        JsonNodeFactory.instance.objectNode().put("started_at_us", BenchCommand.epochMicros())),
                HttpPost.KIND, new HttpPost());
    }

    static long nonNegativeLong(JsonNode payload, String field) {
        JsonNode value = payload.path(field);
        if (!value.canConvertToLong() || !value.isIntegralNumber() || value.asLong() < 0) {
            throw new NonRetryableException("payload needs a non-negative integer '" + field + "', got " + payload);
        }
        return value.asLong();
    }
}
