-- Page allocations by call site, order, migratetype and GFP flags, as perf kmem --page --caller reports them
-- param: trace VARCHAR  the trace name
-- param: sort VARCHAR = bytes,hit  comma list of perf kmem's --page sort keys: page, callsite, hit, bytes, order, migtype, gfp
-- Needs stacks: replay record --stacks, an ftrace stacktrace trigger on kmem:mm_page_alloc,
-- or a trace.dat with kernel_stack records. A call site is a stack's first frame
-- outside the page allocator (replay.trace.callsites). bytes: pages allocated
-- (2^order each) times the page size; hit: allocations; failed: of them, failed
-- ones; page: the lowest pfn allocated from there; stacks: distinct stacks.
WITH t AS (SELECT trace_id, coalesce(page_size, 4096) AS page_size FROM traces WHERE name = $trace),
k AS (SELECT list_transform(string_split(lower($sort), ','), lambda x: trim(x)) AS keys),
a AS (
    SELECT c.callsite, e."order", mt_name(e.migratetype) AS migtype, e.gfp,
           count(*) AS hit,
           sum((1::BIGINT << e."order") * t.page_size) AS bytes,
           count(*) FILTER (WHERE e.failed) AS failed,
           min(e.pfn) AS page,
           count(DISTINCT c.stack) AS stacks
    FROM callsites c
    JOIN t USING (trace_id)
    JOIN events e ON e.trace_id = c.trace_id AND e.seq = c.seq
    WHERE e.op = 'alloc'
    GROUP BY ALL
)
SELECT bytes, hit, failed, "order", migtype, gfp, callsite, page, stacks
FROM a, k
WHERE CASE WHEN list_bool_and(list_transform(k.keys, lambda x: x IN
           ('page', 'callsite', 'hit', 'bytes', 'order', 'migtype', 'gfp')))
      THEN true
      ELSE error('sort: unknown key in ''' || $sort || ''' (page, callsite, hit, bytes, order, migtype, gfp)')
      END
ORDER BY
    list_position(k.keys, 'page') IS NULL, CASE WHEN list_position(k.keys, 'page') = 1 THEN page END,
    CASE WHEN list_position(k.keys, 'callsite') = 1 THEN callsite END,
    CASE WHEN list_position(k.keys, 'hit') = 1 THEN hit END DESC,
    CASE WHEN list_position(k.keys, 'bytes') = 1 THEN bytes END DESC,
    CASE WHEN list_position(k.keys, 'order') = 1 THEN "order" END,
    CASE WHEN list_position(k.keys, 'migtype') = 1 THEN migtype END,
    CASE WHEN list_position(k.keys, 'gfp') = 1 THEN gfp END,
    CASE WHEN list_position(k.keys, 'callsite') = 2 THEN callsite END,
    CASE WHEN list_position(k.keys, 'hit') = 2 THEN hit END DESC,
    CASE WHEN list_position(k.keys, 'bytes') = 2 THEN bytes END DESC,
    CASE WHEN list_position(k.keys, 'order') = 2 THEN "order" END,
    CASE WHEN list_position(k.keys, 'migtype') = 2 THEN migtype END,
    CASE WHEN list_position(k.keys, 'gfp') = 2 THEN gfp END,
    CASE WHEN list_position(k.keys, 'page') = 2 THEN page END,
    bytes DESC, hit DESC, callsite
