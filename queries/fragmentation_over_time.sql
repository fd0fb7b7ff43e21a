-- A run's fragmentation over time: free pages, largest free order and the kernel's indices, per step bucket
-- param: run BIGINT  the run id
-- param: buckets BIGINT = 100  number of step buckets
-- param: order BIGINT = 9  the order the indices are computed for
WITH s AS (
    SELECT * FROM steps WHERE run_id = $run AND free_pages IS NOT NULL
),
n AS (SELECT max(seq) + 1 AS n FROM s)
SELECT (seq * $buckets) // n AS bucket,
       max(seq) AS last_seq,
       arg_max(free_pages, seq) AS free_pages,
       arg_max(largest_free_order, seq) AS largest_free_order,
       arg_max(unusable_index($order, nr_free_0, nr_free_1, nr_free_2, nr_free_3, nr_free_4,
               nr_free_5, nr_free_6, nr_free_7, nr_free_8, nr_free_9, nr_free_10), seq) AS unusable_index,
       arg_max(fragmentation_index($order, nr_free_0, nr_free_1, nr_free_2, nr_free_3, nr_free_4,
               nr_free_5, nr_free_6, nr_free_7, nr_free_8, nr_free_9, nr_free_10), seq) AS fragmentation_index,
       arg_max(extfrag_for_order($order, nr_free_0, nr_free_1, nr_free_2, nr_free_3, nr_free_4,
               nr_free_5, nr_free_6, nr_free_7, nr_free_8, nr_free_9, nr_free_10), seq) AS extfrag_for_order,
       max(failures) AS failures
FROM s, n
GROUP BY bucket
ORDER BY bucket
