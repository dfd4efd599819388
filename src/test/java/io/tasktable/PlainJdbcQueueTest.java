package io.tasktable;

import io.tasktable.testing.TestDatabase;

/** The queue contract through plain SQL over JDBC, as a caller in any language would use it. */
class PlainJdbcQueueTest extends QueueContractTest {

    PlainJdbcQueueTest(TestDatabase db) {
        super(db, new JdbcQueueApi());
    }
}
