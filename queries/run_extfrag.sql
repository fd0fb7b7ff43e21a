-- A run's modelled fallbacks (extfrag events) by allocation and fallback migratetype
-- param: run BIGINT  the run id
SELECT mt_name(alloc_migratetype) AS alloc_migratetype,
       mt_name(fallback_migratetype) AS fallback_migratetype,
       count(*) AS events,
       count(*) FILTER (fragmenting) AS fragmenting,
       count(*) FILTER (change_ownership) AS change_ownership,
       min(fallback_order) AS min_fallback_order,
       max(fallback_order) AS max_fallback_order,
       count(*) FILTER (seq < 0) AS before_first_event
FROM extfrag
WHERE run_id = $run
GROUP BY ALL
ORDER BY events DESC
