-- The observed zone's state (the trace's zone) before and after each real compaction
-- param: run BIGINT  an observed run id (replay run TRACE --observed)
WITH r AS (SELECT run_id, trace_id FROM runs WHERE run_id = $run AND model = 'observed'),
c AS (
    SELECT a.*, sum(CASE WHEN a.event = 'mm_compaction_begin' THEN 1 ELSE 0 END)
                OVER (PARTITION BY a.pid ORDER BY a.line)::BIGINT AS compaction
    FROM aux_events a JOIN r USING (trace_id)
    WHERE a.event IN ('mm_compaction_begin', 'mm_compaction_end', 'mm_migrate_pages')
),
k AS (
    SELECT compaction,
           min(line) FILTER (event = 'mm_compaction_begin') AS begin_line,
           min(seq) FILTER (event = 'mm_compaction_begin') AS begin_seq,
           max(seq) FILTER (event = 'mm_compaction_end') AS end_seq,
           any_value(args->>'zone_start') FILTER (event = 'mm_compaction_begin') AS zone_start,
           any_value(args->>'zone_end') FILTER (event = 'mm_compaction_begin') AS zone_end,
           sum(TRY_CAST(args->>'nr_succeeded' AS BIGINT))
               FILTER (event = 'mm_migrate_pages')::BIGINT AS migrated
    FROM c WHERE compaction > 0 GROUP BY compaction
),
s AS (
    SELECT s.seq, s.free_pages, s.largest_free_order, s.nr_free_9, s.nr_free_10,
           extfrag_for_order(9, s.nr_free_0, s.nr_free_1, s.nr_free_2, s.nr_free_3, s.nr_free_4, s.nr_free_5, s.nr_free_6, s.nr_free_7, s.nr_free_8, s.nr_free_9, s.nr_free_10) AS extfrag_9
    FROM steps s JOIN r USING (run_id) WHERE s.free_pages IS NOT NULL
)
SELECT k.compaction, k.begin_line, k.zone_start, k.zone_end, k.migrated,
       b.seq AS seq_before, b.free_pages AS free_before, b.nr_free_9 AS order9_before,
       b.nr_free_10 AS order10_before, b.extfrag_9 AS extfrag9_before,
       e.seq AS seq_after, e.free_pages AS free_after, e.nr_free_9 AS order9_after,
       e.nr_free_10 AS order10_after, e.extfrag_9 AS extfrag9_after
FROM k
LEFT JOIN LATERAL (SELECT * FROM s WHERE s.seq < k.begin_seq ORDER BY s.seq DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (SELECT * FROM s WHERE s.seq >= k.end_seq ORDER BY s.seq LIMIT 1) e ON true
ORDER BY k.begin_line
