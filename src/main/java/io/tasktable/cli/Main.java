package io.tasktable.cli;

import java.util.concurrent.Callable;

import org.slf4j.bridge.SLF4JBridgeHandler;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code java -jar tasktable.jar COMMAND}: the tasktable command line. */
@Command(name = "tasktable", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "A PostgreSQL task queue whose rules live in the database.",
        subcommands = {MigrateCommand.class, ServeCommand.class, WorkCommand.class, EnqueueCommand.class,
                StatsCommand.class, BenchCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Every command reads the database from DATABASE_URL "
                + "(postgresql://user:password@host:port/db or jdbc:postgresql://...);",
                "unset, it is postgresql://127.0.0.1:5432/postgres as the current OS user."})
public final class Main implements Callable<Integer> {

    public static void main(String[] args) {
        SLF4JBridgeHandler.removeHandlersForRootLogger();
        SLF4JBridgeHandler.install();
        System.exit(commandLine().execute(args));
    }

    /** The configured command line; tests run it in-process. */
    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new Main());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            commandLine.getErr().println("tasktable: " + Cli.oneLine(e));
            return Cli.EXIT_FAILURE;
        });
        cli.setParameterExceptionHandler((e, args) -> {
            CommandLine command = e.getCommandLine();
            command.getErr().println("tasktable: " + e.getMessage() + " (see '"
                    + command.getCommandSpec().qualifiedName() + " --help')");
            return Cli.EXIT_USAGE;
        });
        return cli;
    }

    @Override
    public Integer call() {
        CommandLine.usage(this, System.err);
        return Cli.EXIT_USAGE;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String version = Main.class.getPackage().getImplementationVersion();
            return new String[] {"tasktable " + (version == null ? "(development build)" : version)};
        }
    }
}
