package io.tasktable;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import java.util.zip.CRC32;

/**
 * Builds {@code db/install.sql}, the single-file install for psql users, from the Flyway migrations.
 *
 * <p>The script creates the schema and Flyway's history table if missing, then applies each migration not
 * yet recorded there and records it exactly as Flyway would (same checksum), so a database installed with
 * psql can later be upgraded with {@code tasktable migrate} and the other way round. Re-running it applies
 * only what is missing: on a current database it changes nothing. The build regenerates the file; CI fails
 * when the committed copy differs.
 */
public final class InstallScript {

    private static final Pattern VERSIONED = Pattern.compile("V(\\d+(?:[._]\\d+)*)__(.+)\\.sql");

    /** One migration: its version, description and script as Flyway names them. */
    record Migration(String version, String description, String script, String sql) {
    }

    private InstallScript() {
    }

    /** Writes the script built from the migrations in {@code args[0]} to {@code args[1]}. */
    public static void main(String[] args) throws IOException {
        Path migrations = Path.of(args[0]);
        Path target = Path.of(args[1]);
        List<Migration> found = new ArrayList<>();
        try (Stream<Path> files = Files.list(migrations)) {
            for (Path file : files.filter(f -> VERSIONED.matcher(f.getFileName().toString()).matches()).toList()) {
                found.add(migration(file.getFileName().toString(), Files.readString(file)));
            }
        }
        String script = render(found);
        if (!Files.exists(target) || !Files.readString(target).equals(script)) {
            Files.writeString(target, script);
        }
    }

    static Migration migration(String fileName, String sql) {
        Matcher m = VERSIONED.matcher(fileName);
        if (!m.matches()) {
            throw new IllegalArgumentException("not a versioned migration: " + fileName);
        }
        return new Migration(m.group(1).replace('_', '.'), m.group(2).replace('_', ' '), fileName, sql);
    }

    static String render(List<Migration> migrations) {
        List<Migration> ordered = new ArrayList<>(migrations);
        ordered.sort(Comparator.comparing(InstallScript::versionKey));
        StringBuilder out = new StringBuilder();
        out.append("""
                -- tasktable: single-file install for psql, GENERATED from db/migration by the build
                -- (io.tasktable.InstallScript). Do not edit: change a migration and rebuild.
                --
                --   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f db/install.sql
                --
                -- Applies, in one transaction, each migration the database does not have yet and records it in
                -- tasktable.flyway_schema_history exactly as Flyway does, so `tasktable migrate` and this script
                -- can take turns. On an up-to-date database it changes nothing; it never drops anything.
                \\set ON_ERROR_STOP on
                BEGIN;
                CREATE SCHEMA IF NOT EXISTS tasktable;
                CREATE TABLE IF NOT EXISTS tasktable.flyway_schema_history (
                    installed_rank integer NOT NULL CONSTRAINT flyway_schema_history_pk PRIMARY KEY,
                    version varchar(50),
                    description varchar(200) NOT NULL,
                    type varchar(20) NOT NULL,
                    script varchar(1000) NOT NULL,
                    checksum integer,
                    installed_by varchar(100) NOT NULL,
                    installed_on timestamp NOT NULL DEFAULT now(),
                    execution_time integer NOT NULL,
                    success boolean NOT NULL
                );
                CREATE INDEX IF NOT EXISTS flyway_schema_history_s_idx ON tasktable.flyway_schema_history (success);
                """);
        for (Migration m : ordered) {
            out.append("\n-- ").append("=".repeat(96)).append('\n')
                    .append("-- ").append(m.script()).append('\n')
                    .append("SELECT NOT EXISTS (SELECT FROM tasktable.flyway_schema_history WHERE version = '")
                    .append(m.version()).append("' AND success) AS tasktable_apply \\gset\n")
                    .append("\\if :tasktable_apply\n")
                    .append(m.sql().endsWith("\n") ? m.sql() : m.sql() + "\n")
                    .append("INSERT INTO tasktable.flyway_schema_history (installed_rank, version, description, type, script, "
                            + "checksum, installed_by, execution_time, success)\n")
                    .append("SELECT coalesce(max(installed_rank), 0) + 1, '").append(m.version()).append("', '")
                    .append(m.description().replace("'", "''")).append("', 'SQL', '").append(m.script())
                    .append("', ").append(checksum(m.sql())).append(", current_user, 0, true FROM tasktable.flyway_schema_history;\n")
                    .append("\\endif\n");
        }
        out.append("\nCOMMIT;\n");
        return out.toString();
    }

    /** Flyway's checksum of a SQL migration: CRC32 over its lines without line breaks (and without a BOM). */
    static int checksum(String sql) {
        CRC32 crc = new CRC32();
        try (BufferedReader lines = new BufferedReader(new java.io.StringReader(sql))) {
            String line = lines.readLine();
            if (line != null && line.startsWith("\uFEFF")) {
                line = line.substring(1);
            }
            for (; line != null; line = lines.readLine()) {
                crc.update(line.getBytes(StandardCharsets.UTF_8));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return (int) crc.getValue();
    }

    private static String versionKey(Migration m) {
        StringBuilder key = new StringBuilder();
        for (String part : m.version().split("\\.")) {
            key.append(String.format("%010d", Long.parseLong(part)));
        }
        return key.toString();
    }
}
