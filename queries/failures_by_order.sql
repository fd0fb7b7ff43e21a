-- A run's allocations and failures per order and migratetype (what-if success rate)
-- param: run BIGINT  the run id
SELECT e."order", mt_name(e.migratetype) AS migratetype,
       count(*) AS allocs,
       count(*) FILTER (s.outcome = 'failed') AS failures,
       round(100.0 * count(*) FILTER (s.outcome = 'ok') / count(*), 2) AS success_pct,
       min(e.seq) FILTER (s.outcome = 'failed') AS first_failure_seq
FROM steps s
JOIN runs r USING (run_id)
JOIN events e ON e.trace_id = r.trace_id AND e.seq = s.seq
WHERE s.run_id = $run AND e.op = 'alloc'
GROUP BY ALL
ORDER BY e."order", migratetype
