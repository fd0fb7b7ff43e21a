-- Physical contiguity of each run's regions (VMAs): runs where pfn - vpn is constant
-- param: runs VARCHAR = all  comma-separated run ids, or all
SELECT c.run_id, coalesce(json_extract_string(r.config, '$.preset'), r.model) AS model,
       c.phase, c.seq, count(*) AS regions, sum(c.pages) AS pages, sum(c.runs) AS runs,
       round(sum(c.pages) / sum(c.runs), 1) AS pages_per_run,
       round(100.0 * sum(c.largest_run) / sum(c.pages), 1) AS largest_run_pct,
       round(100.0 * sum(c.in_place) / sum(c.pages), 1) AS at_target_pct,
       count(*) FILTER (c.runs = 1) AS regions_in_one_run
FROM contiguity c JOIN runs r USING (run_id)
WHERE CAST($runs AS VARCHAR) = 'all'
   OR list_contains(list_transform(string_split(CAST($runs AS VARCHAR), ','), lambda x: TRY_CAST(trim(x) AS INTEGER)),
                    c.run_id)
GROUP BY c.run_id, 2, c.phase, c.seq
ORDER BY c.run_id, CASE c.phase WHEN 'before_exchange' THEN 0 WHEN 'after_exchange' THEN 1 ELSE 2 END, c.seq
