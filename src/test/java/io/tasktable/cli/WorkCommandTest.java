package io.tasktable.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Duration;

import org.junit.jupiter.api.Test;

import picocli.CommandLine;

/** {@code tasktable work} on the command line, in-process. */
class WorkCommandTest {

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int run(String... args) {
        CommandLine cli = Main.commandLine();
        cli.setOut(new PrintWriter(out, true));
        cli.setErr(new PrintWriter(err, true));
        return cli.execute(args);
    }

    @Test
    void work_help_describes_every_option() {
        assertThat(run("work", "--help")).isEqualTo(Cli.EXIT_OK);
        assertThat(out.toString()).contains("Usage: tasktable work", "--queues", "--concurrency", "--poll-interval",
                "--shutdown-grace", "--handler-timeout", "--lease", "--rescue-interval", "--claim-batch", "--vacuum-threshold", "--pool-size", "http.post", "stamp");
    }

    @Test
    void an_unknown_flag_gives_a_one_line_error_and_exit_code_2() {
        assertThat(run("work", "--concurency")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString().lines().toList()).singleElement().asString()
                .startsWith("tasktable: Unknown option: '--concurency'")
                .endsWith("(see 'tasktable work --help')");
    }

    @Test
    void a_malformed_duration_is_a_usage_error() {
        assertThat(run("work", "--poll-interval", "soon")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString().lines().findFirst()).hasValueSatisfying(
                line -> assertThat(line).startsWith("tasktable: ").contains("'soon' is not a duration"));
    }

    @Test
    void an_option_out_of_range_is_a_usage_error() {
        assertThat(run("work", "--concurrency", "0")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).startsWith("tasktable: concurrency must be between 1 and 10000, got 0");
    }

    @Test
    void a_negative_vacuum_threshold_is_a_usage_error() {
        assertThat(run("work", "--vacuum-threshold", "-1")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).startsWith("tasktable: vacuumThreshold must be zero (never) or more, got -1");
    }

    @Test
    void a_claim_batch_out_of_range_is_a_usage_error() {
        assertThat(run("work", "--claim-batch", "0")).isEqualTo(Cli.EXIT_USAGE);
        assertThat(err.toString()).startsWith("tasktable: claimBatch must be between 1 and 10000, got 0");
    }

    @Test
    void durations_read_short_and_iso_forms() {
        Durations durations = new Durations();
        assertThat(durations.convert("250ms")).isEqualTo(Duration.ofMillis(250));
        assertThat(durations.convert("5s")).isEqualTo(Duration.ofSeconds(5));
        assertThat(durations.convert("2m")).isEqualTo(Duration.ofMinutes(2));
        assertThat(durations.convert("1h")).isEqualTo(Duration.ofHours(1));
        assertThat(durations.convert("PT1.5S")).isEqualTo(Duration.ofMillis(1500));
    }
}
