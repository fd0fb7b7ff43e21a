-- A run's fragmentation over time: free pages, largest free order and the kernel's indices, per step bucket
-- param: run BIGINT  the run id
-- param: buckets BIGINT = 100  number of step buckets
-- param: order BIGINT = 9  the order the indices are computed for
-- (each bucket's last step is found first; the indices are computed for those rows only)
WITH s AS (
    SELECT seq, failures FROM steps WHERE run_id = $run AND free_pages IS NOT NULL
),
n AS (SELECT max(seq) + 1 AS n FROM s),
b AS (
    SELECT (seq * $buckets) // n AS bucket, max(seq) AS last_seq, max(failures) AS failures
    FROM s, n
    GROUP BY bucket
)
SELECT b.bucket, b.last_seq, t.free_pages, t.largest_free_order,
       unusable_index($order, t.nr_free_0, t.nr_free_1, t.nr_free_2, t.nr_free_3, t.nr_free_4,
           t.nr_free_5, t.nr_free_6, t.nr_free_7, t.nr_free_8, t.nr_free_9, t.nr_free_10) AS unusable_index,
       fragmentation_index($order, t.nr_free_0, t.nr_free_1, t.nr_free_2, t.nr_free_3, t.nr_free_4,
           t.nr_free_5, t.nr_free_6, t.nr_free_7, t.nr_free_8, t.nr_free_9, t.nr_free_10) AS fragmentation_index,
       extfrag_for_order($order, t.nr_free_0, t.nr_free_1, t.nr_free_2, t.nr_free_3, t.nr_free_4,
           t.nr_free_5, t.nr_free_6, t.nr_free_7, t.nr_free_8, t.nr_free_9, t.nr_free_10) AS extfrag_for_order,
       b.failures
FROM b JOIN steps t ON t.run_id = $run AND t.seq = b.last_seq AND t.free_pages IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY b.bucket) = 1
ORDER BY b.bucket
