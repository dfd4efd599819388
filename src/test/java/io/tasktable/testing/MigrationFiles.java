package io.tasktable.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/** The migrations this build ships, so that tests counting them need no edit when one is added. */
public final class MigrationFiles {

    private MigrationFiles() {
    }

    /** Versioned migrations in {@code db/migration} (tests run from the project directory). */
    public static int count() {
        try (Stream<Path> files = Files.list(Path.of("db/migration"))) {
            return (int) files.filter(f -> f.getFileName().toString().matches("V\\d+__.+\\.sql")).count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
