-- Fallback (mm_page_alloc_extfrag) events by allocation and fallback migratetype
-- param: trace VARCHAR  the trace name
SELECT mt_name(TRY_CAST(a.args->>'alloc_migratetype' AS INTEGER)) AS alloc_migratetype,
       mt_name(TRY_CAST(a.args->>'fallback_migratetype' AS INTEGER)) AS fallback_migratetype,
       count(*) AS events,
       count(*) FILTER (TRY_CAST(a.args->>'fragmenting' AS INTEGER) = 1) AS fragmenting,
       count(*) FILTER (TRY_CAST(a.args->>'change_ownership' AS INTEGER) = 1) AS change_ownership,
       min(TRY_CAST(a.args->>'fallback_order' AS INTEGER)) AS min_fallback_order,
       max(TRY_CAST(a.args->>'fallback_order' AS INTEGER)) AS max_fallback_order
FROM aux_events a JOIN traces t USING (trace_id)
WHERE t.name = $trace AND a.event = 'mm_page_alloc_extfrag'
GROUP BY ALL
ORDER BY events DESC
