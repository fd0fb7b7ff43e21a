-- Runs side by side: outcomes, fallbacks and the final fragmentation of each
-- param: runs VARCHAR = all  comma-separated run ids, or all
-- param: order BIGINT = 9  the order the final indices are computed for
SELECT r.run_id, t.name AS trace,
       coalesce(json_extract_string(r.config, '$.preset'), r.model) AS model,
       r.events, r.allocs, r.failures,
       round(100.0 * (r.allocs - r.failures) / nullif(r.allocs, 0), 3) AS success_pct,
       r.fallbacks, r.claims, r.steals, r.below_low,
       r.free_pages, r.pcp_pages,
       largest_free_order(r.nr_free[1], r.nr_free[2], r.nr_free[3], r.nr_free[4], r.nr_free[5], r.nr_free[6], r.nr_free[7], r.nr_free[8], r.nr_free[9], r.nr_free[10], r.nr_free[11]) AS largest_free_order,
       unusable_index($order, r.nr_free[1], r.nr_free[2], r.nr_free[3], r.nr_free[4], r.nr_free[5], r.nr_free[6], r.nr_free[7], r.nr_free[8], r.nr_free[9], r.nr_free[10], r.nr_free[11]) AS unusable_index,
       extfrag_for_order($order, r.nr_free[1], r.nr_free[2], r.nr_free[3], r.nr_free[4], r.nr_free[5], r.nr_free[6], r.nr_free[7], r.nr_free[8], r.nr_free[9], r.nr_free[10], r.nr_free[11]) AS extfrag_for_order,
       (SELECT CASE WHEN count(*) = 0 THEN NULL ELSE count(*) FILTER (
                   (p.migratetype <> 0 AND p.unmovable > 0) OR (p.migratetype <> 1 AND p.movable > 0)
                   OR (p.migratetype <> 2 AND p.reclaimable > 0)) END
        FROM pageblocks p
        WHERE p.run_id = r.run_id
          AND p.seq = (SELECT max(q.seq) FROM pageblocks q WHERE q.run_id = r.run_id))
           AS mixed_pageblocks
FROM runs r JOIN traces t USING (trace_id)
WHERE CAST($runs AS VARCHAR) = 'all'
   OR list_contains(list_transform(string_split(CAST($runs AS VARCHAR), ','), lambda x: TRY_CAST(trim(x) AS INTEGER)),
                    r.run_id)
ORDER BY r.run_id
