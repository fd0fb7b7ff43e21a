-- Per-process page allocator activity, counted as Documentation/trace/postprocess/trace-pagealloc-postprocess.pl does
-- param: trace VARCHAR  the trace name
-- Columns follow the script: pages allocd (mm_page_alloc events, failed ones included),
-- allocd under lock (mm_page_alloc_zone_locked), freed direct (mm_page_free, or
-- mm_page_free_direct before 3.3), freed pagevec (mm_page_free_batched lines, or
-- mm_pagevec_free before 3.3), pcpu drain pages,
-- pcpu drains and refills (runs of consecutive drain / zone_locked events of one
-- process), and extfrag fallback / causing (fragmenting) / changed (change_ownership)
-- / severe (fragmenting, fallback_order <= 3) / moderate (fragmenting, fallback_order > 3).
WITH t AS (
    SELECT trace_id, coalesce(format LIKE '%mm_pagevec_free%', false) AS pagevec_era
    FROM traces WHERE name = $trace
),
ev AS (
    SELECT e.line, e.comm, e.pid,
           CASE WHEN e.op = 'alloc' THEN 'mm_page_alloc' ELSE 'mm_page_free' END AS event,
           e.op = 'free' AND coalesce(e.batched, false) AND t.pagevec_era AS batched,
           e.op = 'free' AND NOT (coalesce(e.batched, false) AND t.pagevec_era) AS direct,
           NULL::INTEGER AS fallback_order, NULL::INTEGER AS fragmenting,
           NULL::INTEGER AS change_ownership
    FROM events e JOIN t USING (trace_id)
    UNION ALL
    SELECT a.line, a.comm, a.pid, a.event, a.event = 'mm_page_free_batched', false,
           TRY_CAST(a.args->>'fallback_order' AS INTEGER),
           TRY_CAST(a.args->>'fragmenting' AS INTEGER),
           TRY_CAST(a.args->>'change_ownership' AS INTEGER)
    FROM aux_events a JOIN t USING (trace_id)
),
runs AS (
    SELECT *, lag(event) OVER (PARTITION BY comm, pid ORDER BY line) AS prev FROM ev
)
SELECT comm || '-' || pid AS process,
       count(*) FILTER (event = 'mm_page_alloc') AS pages_allocd,
       count(*) FILTER (event = 'mm_page_alloc_zone_locked') AS allocd_under_lock,
       count(*) FILTER (direct) AS freed_direct,
       count(*) FILTER (batched) AS freed_pagevec,
       count(*) FILTER (event = 'mm_page_pcpu_drain') AS pcpu_drain_pages,
       count(*) FILTER (event = 'mm_page_pcpu_drain'
                        AND prev IS DISTINCT FROM 'mm_page_pcpu_drain') AS pcpu_drains,
       count(*) FILTER (event = 'mm_page_alloc_zone_locked'
                        AND prev IS DISTINCT FROM 'mm_page_alloc_zone_locked') AS pcpu_refills,
       count(*) FILTER (event = 'mm_page_alloc_extfrag') AS extfrag_fallback,
       count(*) FILTER (event = 'mm_page_alloc_extfrag' AND fragmenting = 1) AS extfrag_causing,
       count(*) FILTER (event = 'mm_page_alloc_extfrag' AND change_ownership = 1) AS extfrag_changed,
       count(*) FILTER (event = 'mm_page_alloc_extfrag' AND fragmenting = 1
                        AND fallback_order <= 3) AS extfrag_severe,
       count(*) FILTER (event = 'mm_page_alloc_extfrag' AND fragmenting = 1
                        AND fallback_order > 3) AS extfrag_moderate
FROM runs
GROUP BY process
ORDER BY pages_allocd DESC, process
