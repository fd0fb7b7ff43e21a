-- zsmalloc's three choices side by side (seed 002): zram footprint, order-3 success, copy cost
-- param: runs VARCHAR = all  comma-separated run ids, or all (runs with zsmalloc only)
-- Pages are 4 KiB; bytes are bytes. zram_pages_*: zram pages held at zsmalloc's
-- shrinker calls (zram_pool), end: at the run's end. zs_bytes_copied is zram data
-- copied: objects zs_compact moved plus 4 KiB per zram page compaction migrated;
-- all_bytes_copied adds every other page compaction migrated. order3_unusable_mean:
-- the unusable free space index at order 3 (thousandths: the share of free memory
-- in blocks too small for an order-3 request), averaged over the run's steps.
SELECT r.run_id, t.name AS trace,
       coalesce(json_extract_string(r.config, '$.preset'), r.model) AS model,
       json_extract_string(r.config, '$.params.zsmalloc') AS zsmalloc,
       (SELECT round(avg(p.pages), 1) FROM zram_pool p WHERE p.run_id = r.run_id)
           AS zram_pages_mean,
       (SELECT max(p.pages) FROM zram_pool p WHERE p.run_id = r.run_id) AS zram_pages_max,
       r.zs_pages AS zram_pages_end,
       o3.allocs AS order3_allocs,
       round(100.0 * (o3.allocs - o3.failures) / nullif(o3.allocs, 0), 2) AS order3_success_pct,
       (SELECT round(avg(unusable_index(3, s.nr_free_0, s.nr_free_1, s.nr_free_2, s.nr_free_3,
                                        s.nr_free_4, s.nr_free_5, s.nr_free_6, s.nr_free_7,
                                        s.nr_free_8, s.nr_free_9, s.nr_free_10)), 1)
        FROM steps s WHERE s.run_id = r.run_id AND s.free_pages IS NOT NULL)
           AS order3_unusable_mean,
       r.failures,
       r.zs_objects_moved, r.zs_pages_freed, r.zs_pages_migrated,
       r.migrated AS pages_migrated,
       r.zs_bytes_copied,
       r.zs_bytes_copied + (r.migrated - r.zs_pages_migrated) * 4096 AS all_bytes_copied
FROM runs r
JOIN traces t USING (trace_id)
LEFT JOIN (
    SELECT s.run_id, count(*) AS allocs, count(*) FILTER (s.outcome = 'failed') AS failures
    FROM steps s JOIN runs q USING (run_id)
    JOIN events e ON e.trace_id = q.trace_id AND e.seq = s.seq
    WHERE e.op = 'alloc' AND e."order" = 3 AND q.zs_pages IS NOT NULL
      AND (CAST($runs AS VARCHAR) = 'all'
           OR list_contains(list_transform(string_split(CAST($runs AS VARCHAR), ','),
                                           lambda x: TRY_CAST(trim(x) AS INTEGER)), s.run_id))
    GROUP BY s.run_id
) o3 ON o3.run_id = r.run_id
WHERE r.zs_pages IS NOT NULL
  AND (CAST($runs AS VARCHAR) = 'all'
       OR list_contains(list_transform(string_split(CAST($runs AS VARCHAR), ','),
                                       lambda x: TRY_CAST(trim(x) AS INTEGER)), r.run_id))
ORDER BY r.run_id
