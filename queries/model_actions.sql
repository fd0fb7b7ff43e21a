-- A run's defragmentation actions by kind and result: how often, at what cost
-- param: run BIGINT  the run id
SELECT kind, result, count(*) AS actions,
       min(seq) AS first_seq, max(seq) AS last_seq,
       sum(coalesce(scanned_migrate, 0) + coalesce(scanned_free, 0)) AS pages_scanned,
       sum(coalesce(moved, 0)) AS pages_moved,
       sum(coalesce(failed, 0)) AS failed,
       sum(coalesce(evicted, 0)) AS pages_evicted,
       sum(coalesce(exchanged, 0)) AS pages_exchanged,
       min(free_pages) AS min_free_pages_after
FROM model_events
WHERE run_id = $run
GROUP BY kind, result
ORDER BY kind, actions DESC
