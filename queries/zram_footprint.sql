-- A zsmalloc run's zram pool over time: pages held, objects, fill, what zs_compact did
-- param: run BIGINT  the run id
-- One row per call of zsmalloc's shrinker (before event seq; t_s: seconds of trace
-- time from the trace's first event): zram pages held after it, objects stored,
-- fill_pct = objects per object slot of the zspages held (%), and, where zs_compact
-- ran, the objects it moved, the bytes it copied and the pages it freed.
SELECT p.seq, round((e.ts_ns - f.ts0) / 1e9, 6) AS t_s, p.pages, p.objects,
       round(100.0 * p.objects / nullif(p.slots, 0), 2) AS fill_pct,
       p.compacted, p.objects_moved, p.bytes_copied, p.pages_freed
FROM zram_pool p
JOIN runs r USING (run_id)
JOIN events e ON e.trace_id = r.trace_id AND e.seq = p.seq
JOIN (SELECT trace_id, min(ts_ns) AS ts0 FROM events GROUP BY trace_id) f
  ON f.trace_id = r.trace_id
WHERE p.run_id = $run
ORDER BY p.seq
