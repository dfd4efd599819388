package io.tasktable.testing;

import java.io.IOException;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import io.tasktable.DatabaseUrl;

/** {@code tasktable work} in a JVM of its own, on the test database, its output kept in target/ for post-mortems. */
public final class WorkerProcess {

    private WorkerProcess() {
    }

    /** Starts {@code io.tasktable.cli.Main work ARGS} with the test classpath and DATABASE_URL set. */
    public static Process start(TestDatabase db, String name, String... args) throws IOException {
        List<String> mainAndArgs = new ArrayList<>(List.of("io.tasktable.cli.Main", "work"));
        mainAndArgs.addAll(List.of(args));
        return startJava(db, name, List.of(), mainAndArgs);
    }

    /** Starts {@code java JVM_ARGS MAIN ARGS} with the test classpath and DATABASE_URL set. */
    public static Process startJava(TestDatabase db, String name, List<String> jvmArgs, List<String> mainAndArgs)
            throws IOException {
        List<String> command = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", classpath(), "-Dorg.jooq.no-logo=true", "-Dorg.jooq.no-tips=true"));
        command.addAll(jvmArgs);
        command.addAll(mainAndArgs);
        Path log = Path.of("target", "worker-process-" + name + ".log");
        Files.createDirectories(log.getParent());
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
        builder.environment().put(DatabaseUrl.ENV, libpqUrl(db.url()));
        return builder.start();
    }

    /** Surefire runs tests from a manifest-only jar; this property has the real classpath. */
    private static String classpath() {
        String surefire = System.getProperty("surefire.test.class.path");
        return surefire != null && !surefire.isBlank() ? surefire : System.getProperty("java.class.path");
    }

    private static String libpqUrl(DatabaseUrl url) {
        String credentials = encode(url.user()) + (url.password().isEmpty() ? "" : ":" + encode(url.password()));
        return "postgresql://" + credentials + "@" + url.host() + ":" + url.port() + "/" + url.database();
    }

    private static String encode(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** Pattern for the worker column of tasks claimed by this process: host:pid:suffix. */
    public static String workerPattern(Process process) {
        return "%:" + process.pid() + ":%";
    }
}
