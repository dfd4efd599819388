package io.tasktable;

import java.util.Arrays;

import javax.sql.DataSource;

import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.MigrationInfo;
import org.flywaydb.core.api.MigrationInfoService;
import org.flywaydb.core.api.MigrationState;
import org.flywaydb.core.api.output.MigrateResult;

/** Applies the SQL API (the Flyway migrations shipped in the jar under {@code db/migration}) to a database. */
public final class Migrations {

    /** The schema that holds every tasktable object, Flyway's history table included. */
    public static final String SCHEMA = "tasktable";

    private Migrations() {
    }

    /**
     * Brings the schema up to the newest migration this build knows. Refuses a database migrated by a
     * newer tasktable (a migration this build does not have), rather than running old code against it.
     *
     * @return how many migrations were applied (0 when already current)
     */
    public static int migrate(DataSource dataSource) {
        Flyway flyway = flyway(dataSource);
        MigrationInfo[] future = Arrays.stream(flyway.info().applied())
                .filter(m -> m.getState() == MigrationState.FUTURE_SUCCESS || m.getState() == MigrationState.FUTURE_FAILED)
                .toArray(MigrationInfo[]::new);
        if (future.length > 0) {
            MigrationInfo newest = future[future.length - 1];
            throw new IllegalStateException("the database's tasktable schema is at version " + newest.getVersion()
                    + " (" + newest.getDescription() + "), newer than this build knows; upgrade tasktable");
        }
        MigrateResult result = flyway.migrate();
        return result.migrationsExecuted;
    }

    /**
     * Where the database's schema stands against this build: {@code current}, {@code pending N} (run
     * migrate) or {@code newer V} (the database was migrated by a newer tasktable).
     */
    public static String state(DataSource dataSource) {
        MigrationInfoService info = flyway(dataSource).info();
        MigrationInfo[] applied = info.applied();
        for (int i = applied.length - 1; i >= 0; i--) {
            if (applied[i].getState() == MigrationState.FUTURE_SUCCESS || applied[i].getState() == MigrationState.FUTURE_FAILED) {
                return "newer " + applied[i].getVersion();
            }
        }
        int pending = info.pending().length;
        return pending == 0 ? "current" : "pending " + pending;
    }

    static Flyway flyway(DataSource dataSource) {
        return Flyway.configure()
                .dataSource(dataSource)
                .schemas(SCHEMA)
                .locations("classpath:db/migration")
                .ignoreMigrationPatterns(new String[0])
                .load();
    }
}
