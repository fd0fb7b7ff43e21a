"""A stored trace summarised in SQL: counts, event types, orders and migratetypes.

Shared by ``replay show`` and the API's ``/api/traces/{trace}``; each query
takes ``$id`` (trace_id). Orders are page orders, ``alloc_pages`` pages.
"""

from __future__ import annotations

SUMMARY_SQL = """
SELECT name, kind, source, format, kernel, command, lines, events, aux_events,
       allocs, frees, partial_frees, preexisting, live_at_end, failed_allocs, batched,
       lost_events, lost_markers, skipped_bad,
       round((ts_last - ts_first) / 1e9, 6) AS seconds,
       pfn_min, pfn_max, zone_start_pfn, zone_pages, page_size,
       json_extract(meta, '$.alloc_overlaps')::BIGINT AS alloc_overlaps,
       json_extract(meta, '$.free_mismatches')::BIGINT AS free_mismatches,
       json_extract(meta, '$.frees_of_freed_pages')::BIGINT AS frees_of_freed_pages,
       json_extract(meta, '$.batched_orphans')::BIGINT AS batched_orphans
FROM traces WHERE trace_id = $id
"""
EVENT_TYPES_SQL = """
SELECT CASE WHEN op = 'free' THEN 'free (canonical)'
            WHEN coalesce(failed, false) THEN 'alloc (canonical, failed)'
            ELSE 'alloc (canonical)' END AS event,
       count(*) AS count
FROM events WHERE trace_id = $id GROUP BY ALL
UNION ALL
SELECT event, count(*) FROM aux_events WHERE trace_id = $id GROUP BY ALL
ORDER BY count DESC, event
"""
ORDERS_SQL = """
SELECT "order",
       count(*) FILTER (op = 'alloc' AND NOT coalesce(failed, false)) AS allocs,
       count(*) FILTER (op = 'free') AS frees,
       count(*) FILTER (failed) AS failed,
       (sum(1::BIGINT << "order") FILTER (op = 'alloc' AND NOT coalesce(failed, false)))::BIGINT
           AS alloc_pages
FROM events WHERE trace_id = $id GROUP BY ALL
ORDER BY "order"
"""
MIGRATETYPES_SQL = """
SELECT migratetype, mt_name(migratetype) AS name,
       count(*) FILTER (op = 'alloc') AS allocs,
       count(*) FILTER (op = 'free') AS frees,
       (sum(1::BIGINT << "order") FILTER (op = 'alloc'))::BIGINT AS alloc_pages
FROM events WHERE trace_id = $id GROUP BY ALL ORDER BY migratetype
"""
