package io.tasktable.faults;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;

import io.tasktable.ConnectionPool;
import io.tasktable.DatabaseUrl;
import io.tasktable.TaskHandler;
import io.tasktable.TaskResult;
import io.tasktable.Worker;
import io.tasktable.WorkerOptions;
import io.tasktable.testing.SideEffects;
import io.tasktable.testing.Workers;

/**
 * A worker process for the fault suite: {@link Worker} with handlers that log their side effect, plus poison
 * kinds. Arguments: {@code APPLICATION_NAME CONCURRENCY HANDLER_TIMEOUT_MS [RESCUE_INTERVAL_MS]}. Kinds:
 * <ul>
 * <li>{@code record}: works {@code payload.ms} milliseconds, logs its effect, succeeds;</li>
 * <li>{@code throw}: throws; {@code nul_error}: throws with a NUL character in its message (text columns refuse
 *     it); {@code hang}: blocks until interrupted (the handler timeout);</li>
 * <li>{@code null}: returns null; {@code huge_result}: returns a result over the 1 MB limit;
 *     {@code nul_result}: returns a result holding a NUL character, which jsonb refuses;</li>
 * <li>{@code oom}: asks for twice the heap in one allocation, which fails in the handler alone;
 *     {@code oom_fill}: fills the heap step by step, so that every thread of the JVM runs out for a moment
 *     (not in the suite: see docs/reliability.md).</li>
 * </ul>
 */
public final class FaultWorkerMain {

    private FaultWorkerMain() {
    }

    public static void main(String[] args) throws InterruptedException {
        String applicationName = args[0];
        WorkerOptions options = Workers.FAST.withConcurrency(Integer.parseInt(args[1]))
                .withHandlerTimeout(Duration.ofMillis(Long.parseLong(args[2])))
                .withShutdownGrace(Duration.ofSeconds(1));
        if (args.length > 3) {
            options = options.withRescueInterval(Duration.ofMillis(Long.parseLong(args[3])));
        }
        DatabaseUrl url = DatabaseUrl.fromEnvironment();
        SideEffects effects = SideEffects.attach(url);
        ConnectionPool pool = ConnectionPool.open(url, applicationName, ConnectionPool.DEFAULT_SIZE);
        Worker worker = Worker.start(pool, handlers(effects), options);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            worker.close();
            pool.close();
            effects.close();
        }));
        new CountDownLatch(1).await();
    }

    static Map<String, TaskHandler> handlers(SideEffects effects) {
        return Map.of(
                "record", (task, context) -> {
                    Thread.sleep(task.payload().path("ms").asLong(0));
                    effects.record(task.id(), task.attempt());
                    return TaskResult.success();
                },
                "throw", (task, context) -> {
                    throw new IllegalStateException("poison task " + task.id());
                },
                "hang", (task, context) -> {
                    new CountDownLatch(1).await();
                    return TaskResult.success();
                },
                "nul_error", (task, context) -> {
                    throw new IllegalStateException("poison task " + task.id() + " says a\u0000b");
                },
                "null", (task, context) -> null,
                "huge_result", (task, context) -> TaskResult.success(
                        JsonNodeFactory.instance.objectNode().put("blob", "x".repeat(2 * 1024 * 1024))),
                "nul_result", (task, context) -> TaskResult.success(
                        JsonNodeFactory.instance.objectNode().put("text", "a\u0000b")),
                "oom", (task, context) -> {
                    // twice the whole heap in one allocation: it fails at once, in this handler only
                    long[] hog = new long[(int) Math.min(Integer.MAX_VALUE - 16, Runtime.getRuntime().maxMemory() / 4)];
                    return TaskResult.success(JsonNodeFactory.instance.objectNode().put("size", hog.length));
                },
                "oom_fill", (task, context) -> {
                    List<long[]> hog = new ArrayList<>();
                    while (true) {
                        hog.add(new long[1 << 20]);
                    }
                });
    }
}
