-- Pageblocks over a run: by type, how many are mixed (hold allocated pages of another type)
-- param: run BIGINT  the run id
SELECT seq, mt_name(migratetype) AS migratetype,
       count(*) AS pageblocks,
       count(*) FILTER (
           (migratetype <> 0 AND unmovable > 0) OR (migratetype <> 1 AND movable > 0)
           OR (migratetype <> 2 AND reclaimable > 0)) AS mixed,
       count(*) FILTER (migratetype = 1 AND unmovable + reclaimable > 0) AS polluted_movable,
       sum(unmovable) FILTER (migratetype = 1) AS unmovable_pages_in_movable,
       sum(free_pages) AS free_pages,
       count(*) FILTER (free_pages = 512) AS wholly_free
FROM pageblocks
WHERE run_id = $run
GROUP BY ALL
ORDER BY seq, migratetype
