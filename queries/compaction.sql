-- Real compaction in a trace: each mm_compaction_begin/end pair with what it scanned and migrated
-- param: trace VARCHAR  the trace name
WITH t AS (SELECT trace_id FROM traces WHERE name = $trace),
a AS (SELECT a.* FROM aux_events a JOIN t USING (trace_id)
      WHERE a.event LIKE 'mm_compaction_%' OR a.event = 'mm_migrate_pages'),
b AS (
    SELECT *, sum(CASE WHEN event = 'mm_compaction_begin' THEN 1 ELSE 0 END)
              OVER (PARTITION BY pid ORDER BY line)::BIGINT AS run
    FROM a
)
SELECT run, pid, any_value(comm) AS comm,
       min(line) FILTER (event = 'mm_compaction_begin') AS begin_line,
       min(seq) FILTER (event = 'mm_compaction_begin') AS begin_seq,
       max(seq) FILTER (event = 'mm_compaction_end') AS end_seq,
       any_value(args->>'zone_start') FILTER (event = 'mm_compaction_begin') AS zone_start,
       any_value(args->>'zone_end') FILTER (event = 'mm_compaction_begin') AS zone_end,
       any_value(args->>'migrate_pfn') FILTER (event = 'mm_compaction_begin') AS migrate_pfn_begin,
       any_value(args->>'free_pfn') FILTER (event = 'mm_compaction_begin') AS free_pfn_begin,
       any_value(args->>'migrate_pfn') FILTER (event = 'mm_compaction_end') AS migrate_pfn_end,
       any_value(args->>'free_pfn') FILTER (event = 'mm_compaction_end') AS free_pfn_end,
       any_value(args->>'mode') FILTER (event = 'mm_compaction_begin') AS mode,
       any_value(args->>'status') FILTER (event = 'mm_compaction_end') AS status,
       sum(TRY_CAST(args->>'nr_scanned' AS BIGINT)) FILTER (event = 'mm_compaction_isolate_migratepages')::BIGINT AS migrate_scanned,
       sum(TRY_CAST(args->>'nr_taken' AS BIGINT)) FILTER (event = 'mm_compaction_isolate_migratepages')::BIGINT AS migrate_isolated,
       sum(TRY_CAST(args->>'nr_scanned' AS BIGINT)) FILTER (event = 'mm_compaction_isolate_freepages')::BIGINT AS free_scanned,
       sum(TRY_CAST(args->>'nr_taken' AS BIGINT)) FILTER (event = 'mm_compaction_isolate_freepages')::BIGINT AS free_isolated,
       sum(TRY_CAST(args->>'nr_succeeded' AS BIGINT)) FILTER (event = 'mm_migrate_pages')::BIGINT AS migrated,
       sum(TRY_CAST(args->>'nr_failed' AS BIGINT)) FILTER (event = 'mm_migrate_pages')::BIGINT AS migrate_failed
FROM b
WHERE run > 0
GROUP BY run, pid
ORDER BY begin_line
