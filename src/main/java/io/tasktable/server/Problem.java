package io.tasktable.server;

import com.fasterxml.jackson.databind.node.ObjectNode;

import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.ServerResponse;

/**
 * An error answered as {@code application/problem+json} (RFC 9457). Thrown by handlers, rendered by the
 * routing's error handler, so every error leaves the server in the same shape.
 */
final class Problem extends RuntimeException {

    private final Status status;
    private final String type;
    private final String detail;

    Problem(Status status, String type, String detail) {
        super(detail);
        this.status = status;
        this.type = type;
        this.detail = detail;
    }

    static Problem badRequest(String detail) {
        return new Problem(Status.BAD_REQUEST_400, "invalid-request", detail);
    }

    static Problem notFound(String detail) {
        return new Problem(Status.NOT_FOUND_404, "not-found", detail);
    }

    Status status() {
        return status;
    }

    void send(ServerResponse res) {
        send(res, status, type, detail);
    }

    static void send(ServerResponse res, Status status, String type, String detail) {
        ObjectNode body = Json.MAPPER.createObjectNode();
        body.put("type", "https://tasktable.io/problems/" + type);
        body.put("title", status.reasonPhrase());
        body.put("status", status.code());
        body.put("detail", detail);
        res.status(status);
        res.header(HeaderNames.CONTENT_TYPE, "application/problem+json");
        res.send(body.toString());
    }
}
