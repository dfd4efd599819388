package io.tasktable.cli;

import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import io.tasktable.DatabaseUrl;
import io.tasktable.NewTask;
import io.tasktable.TaskClient;

@Command(name = "enqueue", mixinStandardHelpOptions = true,
        description = "Enqueue one task and print its id (or the id of the live task with the same dedup key).")
final class EnqueueCommand implements Callable<Integer> {

    @Spec
    private CommandSpec spec;

    @Parameters(index = "0", paramLabel = "KIND", description = "Task kind, the name of the handler that runs it.")
    private String kind;

    @Parameters(index = "1", arity = "0..1", paramLabel = "PAYLOAD", defaultValue = "{}",
            description = "JSON object or array passed to the handler (default: ${DEFAULT-VALUE}).")
    private String payload;

    @Option(names = "--queue", defaultValue = NewTask.DEFAULT_QUEUE, description = "Queue (default: ${DEFAULT-VALUE}).")
    private String queue;

    @Option(names = "--priority", defaultValue = "0", description = "Higher runs first, -1000..1000 (default: ${DEFAULT-VALUE}).")
    private int priority;

    @Option(names = "--run-at", paramLabel = "INSTANT", description = "Not before this ISO-8601 instant, e.g. 2030-01-01T09:00:00Z.")
    private String runAt;

    @Option(names = "--max-attempts", description = "Attempts before the task goes dead (default: the queue's).")
    private Integer maxAttempts;

    @Option(names = "--dedup-key", description = "At most one queued or running task per queue and key.")
    private String dedupKey;

    @Override
    public Integer call() {
        NewTask task = NewTask.of(kind, json(payload)).inQueue(queue).withPriority(priority);
        if (runAt != null) {
            try {
                task = task.runAt(Instant.parse(runAt));
            } catch (DateTimeParseException e) {
                throw new ParameterException(spec.commandLine(), "--run-at must be an ISO-8601 instant like 2030-01-01T09:00:00Z");
            }
        }
        if (maxAttempts != null) {
            task = task.withMaxAttempts(maxAttempts);
        }
        if (dedupKey != null) {
            task = task.withDedupKey(dedupKey);
        }
        long id = new TaskClient(Cli.dataSource(DatabaseUrl.fromEnvironment())).enqueue(task);
        spec.commandLine().getOut().println(id);
        return Cli.EXIT_OK;
    }

    private String json(String text) {
        try {
            JsonNode node = new ObjectMapper().readTree(text);
            if (node == null || !(node.isObject() || node.isArray())) {
                throw new ParameterException(spec.commandLine(), "PAYLOAD must be a JSON object or array, e.g. '{\"to\": \"a@example.com\"}'");
            }
            return node.toString();
        } catch (JsonProcessingException e) {
            throw new ParameterException(spec.commandLine(), "PAYLOAD is not valid JSON: " + e.getOriginalMessage());
        }
    }
}
