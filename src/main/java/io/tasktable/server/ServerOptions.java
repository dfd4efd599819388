package io.tasktable.server;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Objects;
import java.util.Optional;

/**
 * How the HTTP server listens.
 *
 * @param host            interface to bind; loopback unless told otherwise
 * @param port            TCP port, 0 for any free one
 * @param apiToken        when present, mutating endpoints require {@code Authorization: Bearer <token>}
 * @param maxBodyBytes    request bodies above this are refused with 413
 * @param allowOpenAccess bind a non-loopback address without a token (explicit opt-in)
 */
public record ServerOptions(String host, int port, Optional<String> apiToken, long maxBodyBytes, boolean allowOpenAccess) {

    /** Loopback: nothing is exposed to the network unless asked for. */
    public static final String DEFAULT_HOST = "127.0.0.1";
    public static final int DEFAULT_PORT = 8080;
    /** 4 MB: a 1 MB payload (the SQL limit) plus room for a batch of small tasks. */
    public static final long DEFAULT_MAX_BODY_BYTES = 4L * 1024 * 1024;

    public ServerOptions {
        Objects.requireNonNull(host, "host");
        Objects.requireNonNull(apiToken, "apiToken");
        apiToken = apiToken.filter(t -> !t.isBlank());
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be between 0 and 65535, got " + port);
        }
        if (maxBodyBytes < 1 || maxBodyBytes > Integer.MAX_VALUE - 1) {
            throw new IllegalArgumentException("max body size must be between 1 byte and 2 GB");
        }
    }

    public static ServerOptions defaults() {
        return new ServerOptions(DEFAULT_HOST, DEFAULT_PORT, Optional.empty(), DEFAULT_MAX_BODY_BYTES, false);
    }

    public ServerOptions withPort(int newPort) {
        return new ServerOptions(host, newPort, apiToken, maxBodyBytes, allowOpenAccess);
    }

    public ServerOptions withToken(String token) {
        return new ServerOptions(host, port, Optional.of(token), maxBodyBytes, allowOpenAccess);
    }

    public ServerOptions withMaxBodyBytes(long bytes) {
        return new ServerOptions(host, port, apiToken, bytes, allowOpenAccess);
    }

    /** Refuses to expose unauthenticated mutating endpoints beyond this machine unless explicitly allowed. */
    void checkExposure() {
        if (apiToken.isPresent() || allowOpenAccess) {
            return;
        }
        try {
            for (InetAddress address : InetAddress.getAllByName(host)) {
                if (!address.isLoopbackAddress()) {
                    throw new IllegalArgumentException("refusing to listen on " + host + " without an API token: set "
                            + "TASKTABLE_API_TOKEN, or pass --allow-open-access to expose an unauthenticated API");
                }
            }
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("unknown host '" + host + "'");
        }
    }
}
