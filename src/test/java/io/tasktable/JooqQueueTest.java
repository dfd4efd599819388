package io.tasktable;

import io.tasktable.testing.TestDatabase;

/** The queue contract through the generated jOOQ bindings. */
class JooqQueueTest extends QueueContractTest {

    JooqQueueTest(TestDatabase db) {
        super(db, new JooqQueueApi());
    }
}
