package io.tasktable.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import picocli.CommandLine;

import io.tasktable.DatabaseUrl;
import io.tasktable.testing.TestDatabase;

/** The benchmark is not part of the test run; this smoke test proves {@code tasktable bench} works end to end. */
@ExtendWith(TestDatabase.Extension.class)
class BenchCommandTest {

    private final TestDatabase db;

    BenchCommandTest(TestDatabase db) {
        this.db = db;
    }

    @Test
    void bench_drain_prints_one_json_object_and_drops_its_database() throws Exception {
        JsonNode result = smoke();
        assertThat(result.path("retention").asText()).startsWith("7 days");
        assertThat(result.path("clock").asText()).startsWith("database");
        // counted from the tasks' claims: at least one task each, at most the claim batch (concurrency 16: 8)
        assertThat(result.path("mean_claim").asDouble()).isBetween(1.0, (double) result.path("claim_batch").asInt());
        // the floor claims as much as a worker's claim may take, unless --floor-batch says otherwise
        assertThat(result.path("floor_batch").asInt()).isEqualTo(result.path("claim_batch").asInt());
        assertThat(result.path("floor_mean_claim").asDouble()).isBetween(1.0, (double) result.path("floor_batch").asInt());
        // no worker VACUUM of live_task ran while the floor was measured
        assertThat(result.path("worker_vacuums_during_floor").isIntegralNumber()).isTrue();
        assertThat(result.path("worker_vacuums_during_floor").asLong()).isZero();
        // CPU per task, read from this host's processes: known when the server runs here, left out when not
        for (String field : List.of("server_cpu_us_per_task", "worker_cpu_us_per_task", "floor_server_cpu_us_per_task")) {
            if (field.startsWith("worker") || serverRunsHere()) {
                assertThat(result.path(field).asDouble()).as(field).isPositive();
            } else {
                assertThat(result.has(field)).as(field).isFalse();
            }
        }
    }

    /** Whether this test's backend is a process of this host (as the bench finds out for its CPU figures). */
    private boolean serverRunsHere() throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement();
             ResultSet r = s.executeQuery("SELECT pg_backend_pid()")) {
            r.next();
            return ProcessHandle.of(r.getLong(1)).flatMap(h -> h.info().command()).orElse("").contains("postgres");
        }
    }

    @Test
    void bench_drain_without_retention_times_the_drain_by_its_own_clock() throws Exception {
        JsonNode result = smoke("--no-retention");
        assertThat(result.path("retention").asText()).startsWith("0");
        assertThat(result.path("clock").asText()).startsWith("bench");
        assertThat(result.path("summary").asText()).contains("retention 0");
        assertThat(result.has("mean_claim")).as("nothing left to count claims by").isFalse();
    }

    @Test
    void bench_drain_fills_the_payloads_it_is_asked_for_and_pairs_each_run_with_a_floor_run_of_the_batch_asked_for()
            throws Exception {
        JsonNode result = smoke("--payload-bytes", "2000", "--runs", "2", "--floor-batch", "5");
        // measured from the tables, not echoed from the option
        assertThat(result.path("payload_bytes").asInt()).isEqualTo(2000);
        assertThat(result.path("floor_payload_bytes").asInt()).isEqualTo(2000);
        assertThat(result.path("summary").asText()).contains("payloads of 2,000 bytes");
        JsonNode drains = result.path("runs_tasks_per_s");
        JsonNode floors = result.path("runs_floor_tasks_per_s");
        JsonNode ratios = result.path("runs_floor_ratio");
        assertThat(drains.size()).isEqualTo(2);
        assertThat(floors.size()).isEqualTo(2);
        assertThat(ratios.size()).isEqualTo(2);
        for (int i = 0; i < 2; i++) {
            assertThat(ratios.get(i).asDouble()).isCloseTo(drains.get(i).asDouble() / floors.get(i).asDouble(), within(0.01));
        }
        assertThat(result.path("floor_ratio").asDouble())
                .isCloseTo((ratios.get(0).asDouble() + ratios.get(1).asDouble()) / 2, within(0.002));
        // counted from the floor's claims: 2,000 tasks in claims of 5 (the workers' claims may take 8 here)
        assertThat(result.path("claim_batch").asInt()).isEqualTo(8);
        assertThat(result.path("floor_batch").asInt()).isEqualTo(5);
        assertThat(result.path("floor_mean_claim").asDouble()).isBetween(4.9, 5.0);
        assertThat(result.path("summary").asText()).contains("claiming 5");
    }

    @Test
    void bench_refuses_a_payload_or_a_floor_batch_out_of_range_or_outside_drain() {
        StringWriter err = new StringWriter();
        CommandLine cli = Main.commandLine();
        cli.setErr(new PrintWriter(err, true));
        assertThat(cli.execute("bench", "drain", "--payload-bytes", "2000000")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).contains("--payload-bytes must be between 0 and 1048576");
        assertThat(cli.execute("bench", "enqueue", "--payload-bytes", "100")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).contains("--payload-bytes applies to drain and history only");
        assertThat(cli.execute("bench", "drain", "--floor-batch", "0")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).contains("--floor-batch must be between 1 and 10000");
        assertThat(cli.execute("bench", "latency", "--floor-batch", "5")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).contains("--floor-batch applies to drain and history only");
    }

    @Test
    void bench_refuses_no_retention_outside_drain() {
        StringWriter err = new StringWriter();
        CommandLine cli = Main.commandLine();
        cli.setErr(new PrintWriter(err, true));
        assertThat(cli.execute("bench", "history", "--no-retention")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).contains("--no-retention applies to drain only");
    }

    /**
     * Runs bench drain of 2,000 tasks in a process of its own; returns its JSON after checking its database is gone.
     * 2,000, not fewer: the worker processes' CPU time is counted in clock ticks of 10 ms.
     */
    private JsonNode smoke(String... extra) throws Exception {
        Path stdout = Files.createTempFile("bench-smoke", ".json");
        List<String> command = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", classpath(), "-Dorg.jooq.no-logo=true", "-Dorg.jooq.no-tips=true",
                "io.tasktable.cli.Main", "bench", "drain", "--tasks", "2000", "--concurrency", "16", "--json"));
        command.addAll(List.of(extra));
        ProcessBuilder builder = new ProcessBuilder(command)
                .redirectOutput(stdout.toFile())
                .redirectError(Path.of("target", "bench-smoke.log").toFile());
        DatabaseUrl url = db.url();
        builder.environment().put(DatabaseUrl.ENV, "postgresql://" + URLEncoder.encode(url.user(), StandardCharsets.UTF_8)
                + "@" + url.host() + ":" + url.port() + "/" + url.database());
        Process bench = builder.start();
        assertThat(bench.waitFor(120, TimeUnit.SECONDS)).as("bench finished within 2 minutes").isTrue();
        assertThat(bench.exitValue()).as("exit status (see target/bench-smoke.log)").isZero();

        List<String> lines = Files.readAllLines(stdout);
        assertThat(lines).hasSize(1);
        JsonNode result = new ObjectMapper().readTree(lines.getFirst());
        assertThat(result.path("scenario").asText()).isEqualTo("drain");
        assertThat(result.path("tasks").asInt()).isEqualTo(2000);
        assertThat(result.path("tasks_per_s").asDouble()).isPositive();
        assertThat(result.path("floor_tasks_per_s").asDouble()).isPositive();
        assertThat(result.path("floor_ratio").asDouble()).isPositive();

        try (Connection c = db.connect(); Statement s = c.createStatement();
             ResultSet r = s.executeQuery("SELECT count(*) FROM pg_database WHERE datname = 'tasktable_bench_" + bench.pid() + "'")) {
            r.next();
            assertThat(r.getInt(1)).as("the bench database is dropped").isZero();
        }
        return result;
    }

    @Test
    void bench_help_says_it_uses_a_database_of_its_own() {
        StringWriter out = new StringWriter();
        CommandLine cli = Main.commandLine();
        cli.setOut(new PrintWriter(out, true));
        assertThat(cli.execute("bench", "--help")).isEqualTo(Cli.EXIT_OK);
        assertThat(out.toString()).contains("tasktable_bench_<pid>", "--keep", "drain", "enqueue", "latency", "steady",
                "history", "--claim-batch", "--json");
    }

    /** Surefire runs tests from a manifest-only jar; this property has the real classpath. */
    private static String classpath() {
        String surefire = System.getProperty("surefire.test.class.path");
        return surefire != null && !surefire.isBlank() ? surefire : System.getProperty("java.class.path");
    }
}
