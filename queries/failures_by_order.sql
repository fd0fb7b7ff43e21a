-- A run's allocations and failures per order and migratetype (what-if success rate)
-- param: run BIGINT  the run id
-- An allocation succeeded unless its step failed: degraded (a virtual compound
-- made of smaller blocks) and, in observed runs, inconsistent (the kernel handed
-- out the block; the rebuilt state could not explain it) are successes, counted
-- as the kernel had them. success_pct is percent; inconsistent counts those steps.
SELECT e."order", mt_name(e.migratetype) AS migratetype,
       count(*) AS allocs,
       count(*) FILTER (s.outcome = 'failed') AS failures,
       round(100.0 * count(*) FILTER (s.outcome <> 'failed') / count(*), 2) AS success_pct,
       count(*) FILTER (s.outcome = 'degraded') AS degraded,
       count(*) FILTER (s.outcome = 'inconsistent') AS inconsistent,
       min(e.seq) FILTER (s.outcome = 'failed') AS first_failure_seq
FROM steps s
JOIN runs r USING (run_id)
JOIN events e ON e.trace_id = r.trace_id AND e.seq = s.seq
WHERE s.run_id = $run AND e.op = 'alloc'
GROUP BY ALL
ORDER BY e."order", migratetype
