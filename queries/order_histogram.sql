-- Allocations per order in time buckets (trace time), with the pages they take
-- param: trace VARCHAR  the trace name
-- param: bucket_ms BIGINT = 100  bucket width in ms of trace time
SELECT (e.ts_ns - t.ts_first) // ($bucket_ms * 1000000) AS bucket,
       ((e.ts_ns - t.ts_first) // ($bucket_ms * 1000000)) * $bucket_ms AS start_ms,
       e."order",
       count(*) AS allocs,
       sum(1::BIGINT << e."order")::BIGINT AS pages
FROM events e JOIN traces t USING (trace_id)
WHERE t.name = $trace AND e.op = 'alloc'
GROUP BY ALL
ORDER BY bucket, e."order"
