package io.tasktable;

/**
 * Thrown by a handler when retrying cannot help (a malformed payload, a permanent refusal): the task goes
 * dead at once with this message, whatever attempts it has left.
 */
public class NonRetryableException extends RuntimeException {

    public NonRetryableException(String message) {
        super(message);
    }

    public NonRetryableException(String message, Throwable cause) {
        super(message, cause);
    }
}
