package io.tasktable.cli;

import java.io.IOException;
import java.util.Map;

/** {@code tasktable ARGS} as a separate JVM, for tests outside this package. */
public final class CliRunner {

    private CliRunner() {
    }

    public record Run(int exitCode, String stdout, String stderr) {
    }

    public static Run tasktable(Map<String, String> env, String... args) throws IOException, InterruptedException {
        MigrateCommandTest.Run run = MigrateCommandTest.tasktable(env, args);
        return new Run(run.exitCode(), run.stdout(), run.stderr());
    }
}
