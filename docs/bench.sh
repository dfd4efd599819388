#!/usr/bin/env bash
# Every measurement behind docs/performance.md, median of 3 runs each: one JSON object per line in $OUT,
# each with the load average when it ended. Needs a built jar (mvn -B package) and DATABASE_URL (or the local
# server); every scenario creates, uses and drops its own database tasktable_bench_<pid>.
set -euo pipefail
cd "$(dirname "$0")/.."
JAVA="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java"
OUT="${OUT:-target/bench-results.jsonl}"
RUNS="${RUNS:-3}"
: > "$OUT"
bench() {
    echo "== bench $*" >&2
    "$JAVA" -jar target/tasktable.jar bench "$@" --runs "$RUNS" --json | tee -a "$OUT"
}
# drain: claim batch sweep, one worker; concurrency four times the batch (at least 64), so that each of its two
# claim threads finds a whole batch of free slots: at twice the batch, claims of 100 took 74 tasks on average (the
# slots of tasks still finishing were not free yet) and were measured against a floor claiming 100
for b in 1 10 100 500; do
    c=$(( 4 * b > 64 ? 4 * b : 64 ))
    bench drain --claim-batch "$b" --concurrency "$c"
done
# drain: concurrency sweep at the default claim batch (each claim takes at most half the concurrency), two workers
for c in 16 64 256; do
    bench drain --concurrency "$c"
done
bench drain --workers 2 --concurrency 500
# 1 x 256 again, against a floor claiming what the worker's claims really take there (mean_claim 118-121 since item
# 45, 101-103 before), not the most they may take (128): the issue's "same batch size" (item 42)
bench drain --concurrency 256 --floor-batch 120
# drain with the queue's retention at 0: succeeded tasks deleted as they complete, the floor's work (item 22)
bench drain --claim-batch 100 --concurrency 400 --no-retention
bench drain --concurrency 256 --no-retention
bench drain --claim-batch 500 --concurrency 2000 --no-retention
# sustained: a drain of 1,000,000, with the worker's VACUUM of live_task (the default, item 40) and without
bench drain --claim-batch 500 --concurrency 2000 --tasks 1000000
bench drain --claim-batch 500 --concurrency 2000 --tasks 1000000 --vacuum-threshold 0 --no-floor
bench drain --claim-batch 100 --concurrency 400 --payload-bytes 1000
bench drain --claim-batch 500 --concurrency 2000 --payload-bytes 1000
# enqueue: single-task transactions from 8 threads; batches of 1,000 from 4 threads
bench enqueue --threads 8
bench enqueue --batch-size 1000 --threads 4 --tasks 200000
# latency: one idle worker (concurrency 64), one task per transaction at 50/s and 200/s
bench latency --rate 50 --duration 10s
bench latency --rate 200 --duration 10s
# steady state: enqueue (8 threads) and drain (one worker x 64) at 2,000/s for 20 s
bench steady --rate 2000 --duration 20s
# history: drain clean, then with 1,000,000 finished and 100,000 future-dated tasks in the table
bench history --claim-batch 500 --concurrency 2000
