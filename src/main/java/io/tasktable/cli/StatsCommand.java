package io.tasktable.cli;

import static io.tasktable.db.Tables.QUEUE_STATS;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.concurrent.Callable;

import org.jooq.SQLDialect;
import org.jooq.impl.DSL;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import io.tasktable.DatabaseUrl;
import io.tasktable.db.tables.records.QueueStatsRecord;

@Command(name = "stats", mixinStandardHelpOptions = true,
        description = "Show each queue's tasks by state and how long its oldest ready task has waited.")
final class StatsCommand implements Callable<Integer> {

    private static final String ROW = "%-20s %-6s %8s %9s %8s %10s %8s %9s  %s%n";

    @Spec
    private CommandSpec spec;

    @Override
    public Integer call() {
        var rows = DSL.using(Cli.dataSource(DatabaseUrl.fromEnvironment()), SQLDialect.POSTGRES)
                .selectFrom(QUEUE_STATS).orderBy(QUEUE_STATS.QUEUE).fetch();
        PrintWriter out = spec.commandLine().getOut();
        out.printf(ROW, "QUEUE", "PAUSED", "READY", "SCHEDULED", "RUNNING", "SUCCEEDED", "DEAD", "CANCELLED", "OLDEST READY");
        for (QueueStatsRecord q : rows) {
            out.printf(ROW, q.getQueue(), q.getPaused() ? "yes" : "no", q.getReady(), q.getQueued() - q.getReady(),
                    q.getRunning(), q.getSucceeded(), q.getDead(), q.getCancelled(),
                    q.getOldestReadyAge() == null ? "-" : age(q.getOldestReadyAge().toDuration()));
        }
        return Cli.EXIT_OK;
    }

    /** 3.2s, 4m05s, 2h10m, 3d04h: the largest two units, enough to judge a backlog at a glance. */
    static String age(Duration d) {
        long s = d.toSeconds();
        if (s < 60) {
            return String.format("%.1fs", d.toMillis() / 1000.0);
        }
        if (s < 3600) {
            return String.format("%dm%02ds", s / 60, s % 60);
        }
        if (s < 86400) {
            return String.format("%dh%02dm", s / 3600, s % 3600 / 60);
        }
        return String.format("%dd%02dh", s / 86400, s % 86400 / 3600);
    }
}
