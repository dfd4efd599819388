-- tasktable 4: the functions a worker calls for every batch keep one plan per session instead of planning
-- each call. Same signatures, same behaviour.
--
-- PL/pgSQL plans a statement with its parameter values (a custom plan) until it decides a generic plan is as
-- good; for these statements it kept planning on every call. Planning cost more than running a small claim:
-- pgbench, one client, 200,000 queued tasks, claim_tasks + complete_tasks per transaction (ms per call):
--
--                       custom plans (before)   one generic plan (after)
--   claim of 1          0.71-1.17               0.29-0.65
--   claim of 10         0.93-1.41               0.62-0.87
--   complete_tasks      0.46-0.59               0.26-0.46
--
-- The generic plans cannot go wrong with the values: the claim's locked ids come as an array (migration V3) and
-- its ready tasks are read in task_claim_idx order whatever LIMIT the plan assumes (checked with 1,000,000 queued
-- tasks: EXPLAIN EXECUTE of the generic plan walks the index); the other three read only the ids they are given
-- (V3). jit = off: none of these statements is big enough to gain from JIT, and with enable_seqscan or
-- enable_nestloop off (V3) any plan that still had to use one would cost 10^10 and be JIT-compiled, about 150 ms
-- per call (seen with enable_sort = off on the claim).
-- CREATE OR REPLACE FUNCTION keeps only the SET clauses it names: a later migration that replaces one of these
-- functions must repeat these settings and V3's.
ALTER FUNCTION tasktable.claim_tasks(integer, text, text[], interval)
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.complete_tasks(bigint[], integer[], jsonb[])
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.fail_tasks(bigint[], integer[], text[], boolean[], timestamptz[])
    SET plan_cache_mode = force_generic_plan SET jit = off;
ALTER FUNCTION tasktable.extend_lease(bigint[], integer[], interval)
    SET plan_cache_mode = force_generic_plan SET jit = off;
