package io.tasktable;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;

/** The error text recorded for a failed attempt: what went wrong and where, short enough to read in a table. */
final class Failures {

    /** Where a handler failed is nearly always in its top frames; the rest is framework. */
    static final int MAX_FRAMES = 20;
    /** Each cause needs only its origin: the frames it shares with the exception above are elided. */
    static final int MAX_CAUSE_FRAMES = 5;
    /** Wrapping is rarely deeper; a longer chain is cut here. */
    static final int MAX_CAUSES = 5;

    private Failures() {
    }

    /** {@code Type: message}, its first frames, then each cause with its first frames, like printStackTrace trimmed. */
    static String describe(Throwable error) {
        StringBuilder out = new StringBuilder();
        Set<Throwable> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        int depth = 0;
        for (Throwable t = error; t != null && seen.add(t) && depth <= MAX_CAUSES; t = t.getCause(), depth++) {
            if (t != error) {
                out.append("\nCaused by: ");
            }
            out.append(t);
            StackTraceElement[] frames = t.getStackTrace();
            int shown = Math.min(frames.length, t == error ? MAX_FRAMES : MAX_CAUSE_FRAMES);
            for (int i = 0; i < shown; i++) {
                out.append("\n\tat ").append(frames[i]);
            }
            if (shown < frames.length) {
                out.append("\n\t... ").append(frames.length - shown).append(" more");
            }
        }
        return out.toString();
    }
}
