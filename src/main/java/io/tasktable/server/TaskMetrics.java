package io.tasktable.server;

import static io.tasktable.db.Tables.QUEUE_STATS;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.jooq.DSLContext;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import io.tasktable.ClaimedTask;
import io.tasktable.WorkerObserver;
import io.tasktable.db.tables.records.QueueStatsRecord;

/**
 * Prometheus metrics of one tasktable process. Queue depth comes from the database at each scrape (one
 * query of {@code queue_stats}), so it is the same whichever process is scraped; the counters and
 * histograms count what this process did (its API enqueues, its in-process workers).
 */
public final class TaskMetrics implements WorkerObserver {

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final Counter enqueued = counter("tasktable.tasks.enqueued", "Tasks enqueued through this process's API");
    private final Counter claimed = counter("tasktable.tasks.claimed", "Tasks claimed by this process's workers");
    private final Counter completed = counter("tasktable.tasks.completed", "Tasks completed by this process's workers");
    private final Counter failed = counter("tasktable.tasks.failed", "Failed attempts recorded by this process's workers");
    private final Counter rescued = counter("tasktable.tasks.rescued", "Expired leases rescued by this process's maintenance");
    private final Timer handlerDuration = Timer.builder("tasktable.handler.duration")
            .description("Time a handler ran").publishPercentileHistogram().register(registry);
    private final Timer startLatency = Timer.builder("tasktable.start.latency")
            .description("From a task's run_at (or enqueue) to its handler starting").publishPercentileHistogram()
            .register(registry);
    private final MultiGauge depth = MultiGauge.builder("tasktable.tasks")
            .description("Tasks in the table by queue and state").register(registry);
    private final MultiGauge oldestReadyAge = MultiGauge.builder("tasktable.oldest.ready.age.seconds")
            .description("How long the oldest ready task of a queue has waited").register(registry);

    private Counter counter(String name, String description) {
        return Counter.builder(name).description(description).register(registry);
    }

    public void enqueued(int n) {
        enqueued.increment(n);
    }

    @Override
    public void claimed(int n) {
        claimed.increment(n);
    }

    @Override
    public void started(ClaimedTask task, Duration sinceDue) {
        startLatency.record(sinceDue);
    }

    @Override
    public void ran(ClaimedTask task, Duration duration) {
        handlerDuration.record(duration);
    }

    @Override
    public void completed(int n) {
        completed.increment(n);
    }

    @Override
    public void failed(int n) {
        failed.increment(n);
    }

    @Override
    public void rescued(int n) {
        rescued.increment(n);
    }

    /** Refreshes the depth gauges from the database and renders everything in Prometheus text format. */
    String scrape(DSLContext db) {
        List<MultiGauge.Row<?>> depthRows = new ArrayList<>();
        List<MultiGauge.Row<?>> ageRows = new ArrayList<>();
        for (QueueStatsRecord q : db.selectFrom(QUEUE_STATS).fetch()) {
            depthRows.add(row(q.getQueue(), "ready", q.getReady()));
            depthRows.add(row(q.getQueue(), "scheduled", q.getQueued() - q.getReady()));
            depthRows.add(row(q.getQueue(), "running", q.getRunning()));
            depthRows.add(row(q.getQueue(), "succeeded", q.getSucceeded()));
            depthRows.add(row(q.getQueue(), "dead", q.getDead()));
            depthRows.add(row(q.getQueue(), "cancelled", q.getCancelled()));
            double age = q.getOldestReadyAge() == null ? 0 : Json.seconds(q.getOldestReadyAge());
            ageRows.add(MultiGauge.Row.of(Tags.of("queue", q.getQueue()), age));
        }
        depth.register(depthRows, true);
        oldestReadyAge.register(ageRows, true);
        return registry.scrape();
    }

    private static MultiGauge.Row<?> row(String queue, String state, long count) {
        return MultiGauge.Row.of(Tags.of("queue", queue, "state", state), count);
    }
}
