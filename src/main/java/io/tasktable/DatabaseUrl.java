package io.tasktable;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.stream.Collectors;

import javax.sql.DataSource;

import org.postgresql.ds.PGSimpleDataSource;

/**
 * Where the database is: parsed from {@code DATABASE_URL} in either the libpq form
 * ({@code postgresql://user:password@host:port/db?sslmode=require}) or the JDBC form
 * ({@code jdbc:postgresql://host:port/db?user=...}).
 *
 * @param host     server host
 * @param port     server port
 * @param database database name
 * @param user     role to connect as
 * @param password password, empty when none (trust or peer auth, or a .pgpass file)
 * @param params   other connection parameters, passed through to the JDBC driver
 */
public record DatabaseUrl(String host, int port, String database, String user, String password,
                          Map<String, String> params) {

    /** The environment variable every tasktable command reads. */
    public static final String ENV = "DATABASE_URL";

    /** Unset {@code DATABASE_URL} means the local server, as the current OS user (like psql). */
    public static final String LOCAL_DEFAULT = "postgresql://127.0.0.1:5432/postgres";

    private static final int DEFAULT_PORT = 5432;
    /** An unreachable server fails a command in seconds, not after the OS's TCP timeout. */
    private static final int CONNECT_TIMEOUT_SECONDS = 10;

    public DatabaseUrl {
        params = Map.copyOf(params);
    }

    /** {@code DATABASE_URL} from the environment, or {@link #LOCAL_DEFAULT} when unset or blank. */
    public static DatabaseUrl fromEnvironment() {
        String url = System.getenv(ENV);
        return parse(url == null || url.isBlank() ? LOCAL_DEFAULT : url);
    }

    /**
     * Parses a libpq-style or JDBC URL.
     *
     * @throws IllegalArgumentException with a one-line explanation when the URL is not understood
     */
    public static DatabaseUrl parse(String url) {
        String text = url.strip();
        String rest;
        if (text.startsWith("jdbc:postgresql://")) {
            rest = text.substring("jdbc:postgresql://".length());
        } else if (text.startsWith("postgresql://")) {
            rest = text.substring("postgresql://".length());
        } else if (text.startsWith("postgres://")) {
            rest = text.substring("postgres://".length());
        } else {
            throw new IllegalArgumentException("unsupported database URL '" + redact(text)
                    + "': expected postgresql://user@host:port/db or jdbc:postgresql://host:port/db");
        }
        URI uri;
        try {
            uri = new URI("postgresql://" + rest);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException("malformed database URL '" + redact(text) + "': " + e.getReason());
        }
        if (uri.getHost() == null) {
            throw new IllegalArgumentException("database URL '" + redact(text) + "' names no host");
        }
        Map<String, String> params = new LinkedHashMap<>();
        if (uri.getRawQuery() != null) {
            for (String pair : uri.getRawQuery().split("&")) {
                if (pair.isEmpty()) {
                    continue;
                }
                int eq = pair.indexOf('=');
                String key = decode(eq < 0 ? pair : pair.substring(0, eq));
                params.put(key, eq < 0 ? "" : decode(pair.substring(eq + 1)));
            }
        }
        String user = Optional.ofNullable(params.remove("user")).orElse(null);
        String password = Optional.ofNullable(params.remove("password")).orElse("");
        if (uri.getRawUserInfo() != null) {
            String info = uri.getRawUserInfo();
            int colon = info.indexOf(':');
            user = decode(colon < 0 ? info : info.substring(0, colon));
            if (colon >= 0) {
                password = decode(info.substring(colon + 1));
            }
        }
        if (user == null || user.isEmpty()) {
            user = System.getProperty("user.name");
        }
        String path = uri.getRawPath() == null ? "" : uri.getRawPath().replaceFirst("^/", "");
        String database = path.isEmpty() ? user : decode(path);
        int port = uri.getPort() < 0 ? DEFAULT_PORT : uri.getPort();
        return new DatabaseUrl(uri.getHost(), port, database, user, password, params);
    }

    /** The same server and credentials, another database. */
    public DatabaseUrl withDatabase(String otherDatabase) {
        return new DatabaseUrl(host, port, otherDatabase, user, password, params);
    }

    /** The JDBC URL without credentials (they go in {@link #properties()}). */
    public String jdbcUrl() {
        String query = params.entrySet().stream()
                .map(e -> encode(e.getKey()) + "=" + encode(e.getValue()))
                .collect(Collectors.joining("&"));
        return "jdbc:postgresql://" + host + ":" + port + "/" + encode(database) + (query.isEmpty() ? "" : "?" + query);
    }

    /** Credentials for {@link java.sql.DriverManager#getConnection(String, Properties)}. */
    public Properties properties() {
        Properties properties = new Properties();
        properties.setProperty("user", user);
        if (!password.isEmpty()) {
            properties.setProperty("password", password);
        }
        return properties;
    }

    /**
     * A non-pooling data source (each connection is new): for one-shot commands, tests and tools. Long-running
     * processes use {@link ConnectionPool}.
     */
    public DataSource dataSource(String applicationName) {
        PGSimpleDataSource dataSource = new PGSimpleDataSource();
        dataSource.setURL(jdbcUrl());
        dataSource.setUser(user);
        if (!password.isEmpty()) {
            dataSource.setPassword(password);
        }
        dataSource.setApplicationName(applicationName);
        dataSource.setConnectTimeout(CONNECT_TIMEOUT_SECONDS);
        return dataSource;
    }

    /** For messages: never prints the password. */
    @Override
    public String toString() {
        return "postgresql://" + user + "@" + host + ":" + port + "/" + database;
    }

    private static String decode(String s) {
        return URLDecoder.decode(s, StandardCharsets.UTF_8);
    }

    private static String encode(String s) {
        return java.net.URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
    }

    private static String redact(String url) {
        return url.replaceAll("://([^:/@]*):[^@/]*@", "://$1:***@");
    }
}
