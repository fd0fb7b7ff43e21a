-- Failed allocations (mm_page_alloc with page=(null)) by order, migratetype and process
-- param: trace VARCHAR  the trace name
SELECT e."order", mt_name(e.migratetype) AS migratetype, e.comm, e.gfp,
       count(*) AS failures, min(e.ts_ns) AS first_ns, max(e.ts_ns) AS last_ns
FROM events e JOIN traces t USING (trace_id)
WHERE t.name = $trace AND e.failed
GROUP BY ALL
ORDER BY failures DESC
