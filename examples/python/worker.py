#!/usr/bin/env python3
"""A tasktable worker in plain Python with psycopg2: the whole protocol is SQL.

    DATABASE_URL=postgresql://... python3 worker.py --queue default [--exit-when-idle]

Claim a batch with tasktable.claim_tasks, run each task's handler, renew leases of long tasks with
extend_lease, and report with complete_task or fail_task, passing back the attempt number the claim
returned (the fencing token). Backoff, retries and dead letters are decided by the SQL functions, so this
worker behaves like the Java one. Delivery is at least once: handlers must be idempotent.
"""
import argparse
import json
import os
import socket
import threading
import time
import traceback

import psycopg2
import psycopg2.extras

BATCH = 10            # tasks per claim
POLL_SECONDS = 1.0    # idle poll; a real worker would also LISTEN tasktable


def record(cur, task):
    """Example side effect, keyed by (task id, attempt) so a second run of one attempt would be visible."""
    cur.execute("INSERT INTO example_effect (task_id, attempt, language) VALUES (%s, %s, 'python')",
                (task["id"], task["attempt"]))


def always_fail(cur, task):
    raise RuntimeError("python handler failed on purpose")


HANDLERS = {"record": record, "always_fail": always_fail}


def heartbeat(dsn, held, lock, stop):
    """Renews the leases of the tasks in hand every few seconds, on its own connection."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        while not stop.wait(5.0):
            with lock:
                ids, attempts = list(held.keys()), list(held.values())
            if ids:
                cur.execute("SELECT tasktable.extend_lease(%s::bigint[], %s::int[])", (ids, attempts))
                kept = set(cur.fetchone()[0])
                lost = [i for i in ids if i not in kept]
                if lost:
                    print(f"lost leases (rescued or cancelled): {lost}", flush=True)
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", action="append", help="queue to work on (repeatable; default: all)")
    parser.add_argument("--exit-when-idle", action="store_true", help="stop when no task is ready")
    args = parser.parse_args()

    dsn = os.environ.get("DATABASE_URL", "postgresql://127.0.0.1:5432/postgres")
    worker = f"{socket.gethostname()}:{os.getpid()}:python"
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    held, lock, stop = {}, threading.Lock(), threading.Event()
    threading.Thread(target=heartbeat, args=(dsn, held, lock, stop), daemon=True).start()
    done = failed = 0
    try:
        while True:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT id, kind, payload, attempt FROM tasktable.claim_tasks(%s, %s, %s)",
                            (BATCH, worker, args.queue))
                tasks = cur.fetchall()
            if not tasks:
                if args.exit_when_idle:
                    break
                time.sleep(POLL_SECONDS)
                continue
            with lock:
                held.update({t["id"]: t["attempt"] for t in tasks})
            for task in tasks:
                handler = HANDLERS.get(task["kind"])
                try:
                    # The side effect and the completion commit together: a crash in between redoes both.
                    with conn:
                        conn.autocommit = False
                        with conn.cursor() as cur:
                            if handler is None:
                                raise LookupError(f"no handler registered for kind '{task['kind']}'")
                            handler(cur, task)
                            cur.execute("SELECT tasktable.complete_task(%s, %s, %s::jsonb)",
                                        (task["id"], task["attempt"], json.dumps({"worker": worker})))
                            if not cur.fetchone()[0]:
                                raise RuntimeError("lease lost: the task was rescued or cancelled")
                    done += 1
                except Exception as error:
                    conn.rollback()
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("SELECT tasktable.fail_task(%s, %s, %s)::text",
                                    (task["id"], task["attempt"], f"{error!r}\n{traceback.format_exc(limit=5)}"))
                    failed += 1
                finally:
                    conn.autocommit = True
                    with lock:
                        held.pop(task["id"], None)
    finally:
        stop.set()
        conn.close()
    print(json.dumps({"worker": worker, "completed": done, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()
