package io.tasktable.faults;

/**
 * Sizes of the fault suite. Quick (the default, run by {@code mvn verify} in CI) keeps the whole suite to a few
 * minutes on two cores; {@code -Dtasktable.faults=full} runs the counts of the reliability report.
 */
final class Faults {

    static final boolean FULL = "full".equals(System.getProperty("tasktable.faults"));

    private Faults() {
    }

    /** The quick count, or the full one with -Dtasktable.faults=full. */
    static int count(int quick, int full) {
        return FULL ? full : quick;
    }
}
