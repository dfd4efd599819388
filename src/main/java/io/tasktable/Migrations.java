package io.tasktable;

import javax.sql.DataSource;

import org.flywaydb.core.Flyway;
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
        MigrateResult result = flyway(dataSource).migrate();
        return result.migrationsExecuted;
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
