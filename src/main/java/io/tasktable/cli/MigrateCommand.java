package io.tasktable.cli;

import java.util.concurrent.Callable;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import io.tasktable.DatabaseUrl;
import io.tasktable.Migrations;

@Command(name = "migrate", mixinStandardHelpOptions = true,
        description = "Create or upgrade the tasktable schema in the database given by DATABASE_URL.")
final class MigrateCommand implements Callable<Integer> {

    @Spec
    private CommandSpec spec;

    @Override
    public Integer call() {
        DatabaseUrl url = DatabaseUrl.fromEnvironment();
        int applied = Migrations.migrate(Cli.dataSource(url));
        spec.commandLine().getOut().println(applied == 0
                ? "tasktable: schema is up to date in " + url
                : "tasktable: applied " + applied + " migration(s) to " + url);
        return Cli.EXIT_OK;
    }
}
