package io.tasktable.cli;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Map;
import java.util.Optional;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;

import io.tasktable.ClaimedTask;
import io.tasktable.NonRetryableException;
import io.tasktable.TaskContext;
import io.tasktable.TaskHandler;
import io.tasktable.TaskResult;

/**
 * Kind {@code http.post}: delivers a webhook. Payload
 * {@code {"url": "https://...", "body": <any JSON>, "headers": {"name": "value"}, "timeout_ms": 10000}}
 * (only url is required; body defaults to {}). Sends body as JSON with an {@code Idempotency-Key} that is the
 * same on every attempt, so a receiver can drop the duplicates at-least-once delivery brings.
 *
 * <p>2xx succeeds (result {@code {"status": N}}). 5xx, 408, 429, connection errors and timeouts fail and are
 * retried after the queue's backoff, or when the answer's {@code Retry-After} says (seconds or an HTTP date, at
 * most {@link #MAX_RETRY_AFTER} ahead): a receiver that rate-limits or is down for maintenance names the time
 * it can take the request. Any other status (other 4xx, and 3xx: redirects are not followed, since re-sending a
 * POST elsewhere is the receiver's decision to document, not ours to guess) fails for good.
 */
final class HttpPost implements TaskHandler {

    static final String KIND = "http.post";
    static final String IDEMPOTENCY_KEY = "Idempotency-Key";
    /** GitHub gives webhook receivers 10 s: a receiver should acknowledge at once and do its work later. */
    static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);
    /** Enough of a refusal's body to see what the receiver said, short enough for last_error. */
    static final int MAX_BODY_IN_ERROR = 500;
    /** The latest a Retry-After may put the next attempt: a receiver's mistake must not park a task for years. */
    static final Duration MAX_RETRY_AFTER = Duration.ofDays(1);

    private final HttpClient client = HttpClient.newBuilder()
            .connectTimeout(DEFAULT_TIMEOUT)
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();

    @Override
    public TaskResult handle(ClaimedTask task, TaskContext context) throws IOException, InterruptedException {
        JsonNode payload = task.payload();
        URI url = url(payload);
        HttpRequest.Builder request = HttpRequest.newBuilder(url)
                .timeout(payload.has("timeout_ms")
                        ? Duration.ofMillis(Math.max(1, BuiltinHandlers.nonNegativeLong(payload, "timeout_ms")))
                        : DEFAULT_TIMEOUT)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(
                        payload.path("body").isMissingNode() ? "{}" : payload.get("body").toString()));
        JsonNode headers = payload.path("headers");
        if (!headers.isMissingNode() && !headers.isObject()) {
            throw new NonRetryableException("payload 'headers' must be an object of strings, got " + headers);
        }
        for (Map.Entry<String, JsonNode> header : headers.properties()) {
            if (!header.getValue().isTextual()) {
                throw new NonRetryableException("header '" + header.getKey() + "' must be a string, got " + header.getValue());
            }
            try {
                request.setHeader(header.getKey(), header.getValue().asText());
            } catch (IllegalArgumentException e) {
                throw new NonRetryableException("header '" + header.getKey() + "' cannot be set: " + e.getMessage());
            }
        }
        request.setHeader(IDEMPOTENCY_KEY, idempotencyKey(task.id()));

        HttpResponse<InputStream> response = client.send(request.build(), HttpResponse.BodyHandlers.ofInputStream());
        int status = response.statusCode();
        if (status >= 200 && status < 300) {
            response.body().close();
            return TaskResult.success(JsonNodeFactory.instance.objectNode().put("status", status));
        }
        String refusal = "POST " + url + " answered " + status + excerpt(response.body());
        if (status >= 500 || status == 408 || status == 429) {
            return response.headers().firstValue("Retry-After").flatMap(HttpPost::retryAfter)
                    .map(delay -> TaskResult.retryAfter(refusal, delay))
                    .orElseGet(() -> TaskResult.retry(refusal));
        }
        return TaskResult.giveUp(refusal);
    }

    /**
     * A Retry-After header's delay (RFC 9110, 10.2.3): seconds, or an HTTP date (a date already past means now), at
     * most {@link #MAX_RETRY_AFTER}; empty when it is neither, and the queue's backoff applies.
     */
    static Optional<Duration> retryAfter(String value) {
        String text = value.strip();
        Duration delay;
        if (!text.isEmpty() && text.chars().allMatch(c -> c >= '0' && c <= '9')) {
            delay = text.length() > 9 ? MAX_RETRY_AFTER : Duration.ofSeconds(Long.parseLong(text));
        } else {
            try {
                ZonedDateTime at = ZonedDateTime.parse(text, DateTimeFormatter.RFC_1123_DATE_TIME);
                delay = Duration.between(Instant.now(), at);
            } catch (DateTimeParseException e) {
                return Optional.empty();
            }
        }
        if (delay.isNegative()) {
            return Optional.of(Duration.ZERO);
        }
        return Optional.of(delay.compareTo(MAX_RETRY_AFTER) > 0 ? MAX_RETRY_AFTER : delay);
    }

    /** The same for every attempt of a task. */
    static String idempotencyKey(long taskId) {
        return "tasktable-" + taskId;
    }

    private static URI url(JsonNode payload) {
        String text = payload.path("url").asText("");
        try {
            URI url = URI.create(text);
            if (("http".equals(url.getScheme()) || "https".equals(url.getScheme())) && url.getHost() != null) {
                return url;
            }
        } catch (IllegalArgumentException e) {
            // reported below, like any other unusable url
        }
        throw new NonRetryableException("payload needs an http(s) 'url', got " + payload.path("url"));
    }

    private static String excerpt(InputStream body) throws IOException {
        try (body) {
            byte[] start = body.readNBytes(MAX_BODY_IN_ERROR);
            String text = new String(start, StandardCharsets.UTF_8).strip();
            return text.isEmpty() ? "" : ": " + text;
        }
    }
}
