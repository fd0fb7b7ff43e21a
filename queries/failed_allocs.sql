-- Failed allocations (mm_page_alloc with page=(null)) by order, migratetype and process
-- param: trace  the trace name
SELECT a."order", mt_name(a.migratetype) AS migratetype, a.comm, a.args->>'gfp_flags' AS gfp,
       count(*) AS failures, min(a.ts_ns) AS first_ns, max(a.ts_ns) AS last_ns
FROM aux_events a JOIN traces t USING (trace_id)
WHERE t.name = $trace AND a.event = 'mm_page_alloc'
GROUP BY ALL
ORDER BY failures DESC
