package io.tasktable;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Objects;
import java.util.Properties;

import javax.sql.DataSource;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;

/**
 * The connections of one process: a HikariCP pool that {@link TaskClient} and {@link Worker} share, and
 * dedicated connections outside it for a worker's LISTEN. Every connection carries the application name, so
 * operators find them in {@code pg_stat_activity}.
 */
public final class ConnectionPool implements AutoCloseable {

    /** A worker uses six pooled connections (two claim, two report, heartbeat, maintenance); one spare for handlers. */
    public static final int DEFAULT_SIZE = 7;
    /**
     * How long a caller waits for a pooled connection before an error: short, because the worker's loops
     * retry anyway, and a caller blocked longer only hides an outage.
     */
    static final Duration CONNECTION_TIMEOUT = Duration.ofSeconds(5);
    /** Fail a connection attempt to an unreachable server well before the pool's own timeout. */
    static final int CONNECT_TIMEOUT_SECONDS = 5;

    private final DatabaseUrl url;
    private final String applicationName;
    private final HikariDataSource pool;

    private ConnectionPool(DatabaseUrl url, String applicationName, HikariDataSource pool) {
        this.url = url;
        this.applicationName = applicationName;
        this.pool = pool;
    }

    /**
     * Opens a pool of at most {@code size} connections. Fails at once when the database cannot be reached.
     */
    public static ConnectionPool open(DatabaseUrl url, String applicationName, int size) {
        Objects.requireNonNull(url, "url");
        Objects.requireNonNull(applicationName, "applicationName");
        HikariConfig config = new HikariConfig();
        config.setPoolName(applicationName);
        config.setJdbcUrl(url.jdbcUrl());
        config.setUsername(url.user());
        if (!url.password().isEmpty()) {
            config.setPassword(url.password());
        }
        config.setMaximumPoolSize(size);
        config.setConnectionTimeout(CONNECTION_TIMEOUT.toMillis());
        driverProperties(applicationName).forEach((k, v) -> config.addDataSourceProperty((String) k, v));
        return new ConnectionPool(url, applicationName, new HikariDataSource(config));
    }

    public DataSource dataSource() {
        return pool;
    }

    public String applicationName() {
        return applicationName;
    }

    /** A new connection outside the pool (for LISTEN), with extra driver properties; the caller closes it. */
    Connection openDedicated(Properties extra) throws SQLException {
        Properties properties = url.properties();
        properties.putAll(driverProperties(applicationName));
        properties.putAll(extra);
        return DriverManager.getConnection(url.jdbcUrl(), properties);
    }

    private static Properties driverProperties(String applicationName) {
        Properties properties = new Properties();
        properties.setProperty("ApplicationName", applicationName);
        properties.setProperty("connectTimeout", Integer.toString(CONNECT_TIMEOUT_SECONDS));
        properties.setProperty("tcpKeepAlive", "true");
        return properties;
    }

    @Override
    public void close() {
        pool.close();
    }
}
