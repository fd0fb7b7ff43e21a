-- Object lifetime distribution by order and migratetype (alloc to last free, log2 buckets of us)
-- param: trace VARCHAR  the trace name
-- Objects still live at the end of the trace are counted in the 'live at end' bucket;
-- objects allocated before tracing began (frees without an alloc) are left out.
WITH t AS (SELECT trace_id, ts_last FROM traces WHERE name = $trace),
obj AS (
    SELECT e.obj,
           max(e."order") FILTER (e.op = 'alloc') AS "order",
           max(e.migratetype) FILTER (e.op = 'alloc') AS migratetype,
           min(e.ts_ns) FILTER (e.op = 'alloc') AS born,
           max(e.ts_ns) FILTER (e.op = 'free') AS died,
           sum(1::BIGINT << e."order") FILTER (e.op = 'free') AS freed_pages
    FROM events e JOIN t USING (trace_id)
    GROUP BY e.obj
),
lived AS (
    SELECT "order", migratetype,
           CASE WHEN died IS NULL OR freed_pages < (1::BIGINT << "order") THEN NULL
                ELSE greatest(died - born, 0) END AS life_ns
    FROM obj WHERE born IS NOT NULL
)
SELECT "order", mt_name(migratetype) AS migratetype,
       CASE WHEN life_ns IS NULL THEN 'live at end'
            WHEN life_ns < 1000 THEN '< 1 us'
            ELSE '< ' || (1::BIGINT << (floor(log2(life_ns / 1000)) + 1)::INTEGER) || ' us' END AS lifetime,
       count(*) AS objects,
       min(life_ns) AS min_ns,
       max(life_ns) AS max_ns
FROM lived
GROUP BY ALL
ORDER BY "order", migratetype, min(coalesce(life_ns, 9223372036854775807))
