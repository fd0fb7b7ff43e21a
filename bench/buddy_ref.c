/*
 * buddy_ref: a small C buddy allocator with the placement rules of the `buddy`
 * model (replay/models/plain_buddy.py; replay/models/buddy.py with grouping off),
 * the reference `make bench` measures `replay run --model buddy` against.
 *
 * Follows mm/page_alloc.c of Linux 6.12 (/work/ksrc/linux-source-6.12):
 *   __rmqueue_smallest + expand: the HEAD block of the first non-empty list at
 *     order >= k; each split puts the upper half at the HEAD of the lower list;
 *   free_one_page -> split_large_buddy: blocks above pageblock_order freed as
 *     pageblock-sized pieces, ascending;
 *   __free_one_page: merge with free buddies of equal order (page_is_buddy: the
 *     buddy is in the zone and free at that order), then TAIL when
 *     buddy_merge_likely (the parent's buddy is free at order + 1; never from
 *     MAX_PAGE_ORDER - 1 up; the parent's first page inside the zone), else HEAD;
 *   boot (__free_pages_core, FPI_TO_TAIL): the zone cut into the largest
 *     naturally aligned blocks, ascending, each at the TAIL of its list.
 * A failed allocation places nothing and its frees are ignored, as in the engine.
 *
 * Input (bench/bench_cref.py writes it from the store's events table), little
 * endian: "RPLYEV01", int64 n, int64 nobj, int64 start_pfn, int64 pages, then
 * the columns uint8 is_alloc[n], int8 order[n], int32 offset[n] (pages into the
 * object), int64 obj[n] (dense ids 0 .. nobj-1).
 *
 * Usage: buddy_ref EVENTS.bin [--steps OUT.bin]
 * --steps writes every step's row: int64 pfn (-1 for frees and failures) and
 * int64 nr_free[11] (free blocks per order after the event), as the replay
 * kernel fills its per-step buffers. Without it the same rows are filled in a
 * reused chunk buffer and not written. Prints one JSON line: events, kernel
 * seconds (the event loop only), failures, free pages and nr_free.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PAGE_ORDER 10
#define NR_PAGE_ORDERS (MAX_PAGE_ORDER + 1)
#define PAGEBLOCK_ORDER 9
#define CHUNK 65536
#define ROW (1 + NR_PAGE_ORDERS)

static int64_t start_pfn, pages;
static int8_t *blk_order;          /* order of the free block starting at offset o, or -1 */
static int32_t *nxt, *prv;         /* free-list links by offset (-1: none) */
static int64_t head[NR_PAGE_ORDERS], tail[NR_PAGE_ORDERS];
static int64_t nr_free[NR_PAGE_ORDERS];

static inline void list_add(int64_t o, int k, int to_tail)
{
	if (to_tail) {
		int64_t t = tail[k];
		prv[o] = (int32_t)t;
		nxt[o] = -1;
		if (t >= 0)
			nxt[t] = (int32_t)o;
		else
			head[k] = o;
		tail[k] = o;
	} else {
		int64_t h = head[k];
		nxt[o] = (int32_t)h;
		prv[o] = -1;
		if (h >= 0)
			prv[h] = (int32_t)o;
		else
			tail[k] = o;
		head[k] = o;
	}
	blk_order[o] = (int8_t)k;
	nr_free[k]++;
}

static inline void list_del(int64_t o, int k)
{
	int64_t p = prv[o], n = nxt[o];
	if (p >= 0)
		nxt[p] = (int32_t)n;
	else
		head[k] = n;
	if (n >= 0)
		prv[n] = (int32_t)p;
	else
		tail[k] = p;
	blk_order[o] = -1;
	nr_free[k]--;
}

static void init_zone(void)
{
	int64_t pfn = start_pfn, end = start_pfn + pages;
	memset(blk_order, -1, (size_t)pages);
	for (int k = 0; k < NR_PAGE_ORDERS; k++) {
		head[k] = tail[k] = -1;
		nr_free[k] = 0;
	}
	while (pfn < end) {
		int k = MAX_PAGE_ORDER;
		while (k > 0 && ((pfn & ((INT64_C(1) << k) - 1)) != 0 || pfn + (INT64_C(1) << k) > end))
			k--;
		list_add(pfn - start_pfn, k, 1);
		pfn += INT64_C(1) << k;
	}
}

/* __rmqueue_smallest + expand: the block's pfn, or -1 */
static inline int64_t rmqueue_smallest(int k)
{
	for (int c = k; c < NR_PAGE_ORDERS; c++) {
		int64_t o = head[c];
		if (o < 0)
			continue;
		list_del(o, c);
		while (c > k) {
			c--;
			list_add(o + (INT64_C(1) << c), c, 0);
		}
		return o + start_pfn;
	}
	return -1;
}

/* buddy_merge_likely: is the parent's buddy free at order k + 1? */
static inline int buddy_merge_likely(int64_t pfn, int k)
{
	if (k >= MAX_PAGE_ORDER - 1)
		return 0;
	int64_t h = pfn & (pfn ^ (INT64_C(1) << k));
	int64_t hbo = (h ^ (INT64_C(1) << (k + 1))) - start_pfn;
	return h >= start_pfn && hbo >= 0 && hbo < pages && blk_order[hbo] == k + 1;
}

/* __free_one_page */
static inline void free_one_page(int64_t pfn, int k)
{
	while (k < MAX_PAGE_ORDER) {
		int64_t b = pfn ^ (INT64_C(1) << k);
		int64_t bo = b - start_pfn;
		if (bo < 0 || bo >= pages || blk_order[bo] != k)
			break;
		list_del(bo, k);
		pfn &= b;
		k++;
	}
	list_add(pfn - start_pfn, k, buddy_merge_likely(pfn, k));
}

/* free_one_page -> split_large_buddy */
static inline void free_pages(int64_t pfn, int k)
{
	int piece = k <= PAGEBLOCK_ORDER ? k : PAGEBLOCK_ORDER;
	int64_t end = pfn + (INT64_C(1) << k);
	for (int64_t p = pfn; p < end; p += INT64_C(1) << piece)
		free_one_page(p, piece);
}

static void *read_exact(FILE *f, size_t size, const char *path, const char *what)
{
	void *p = malloc(size ? size : 1);
	if (!p || fread(p, 1, size, f) != size) {
		fprintf(stderr, "buddy_ref: %s: short read of %s (%zu bytes)\n", path, what, size);
		exit(2);
	}
	return p;
}

int main(int argc, char **argv)
{
	const char *steps_path = NULL;
	if (argc == 4 && strcmp(argv[2], "--steps") == 0)
		steps_path = argv[3];
	else if (argc != 2) {
		fprintf(stderr, "usage: buddy_ref EVENTS.bin [--steps OUT.bin]\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	char magic[8];
	int64_t hdr[4];
	if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "RPLYEV01", 8) != 0 ||
	    fread(hdr, sizeof(int64_t), 4, f) != 4) {
		fprintf(stderr, "buddy_ref: %s: not an events file (magic RPLYEV01 at offset 0)\n",
			argv[1]);
		return 2;
	}
	int64_t n = hdr[0], nobj = hdr[1];
	start_pfn = hdr[2];
	pages = hdr[3];
	if (n < 0 || nobj < 0 || start_pfn < 0 || pages <= 0 || pages > INT32_MAX) {
		fprintf(stderr, "buddy_ref: %s: bad header at offset 8 (n, nobj, start_pfn, pages)\n",
			argv[1]);
		return 2;
	}
	uint8_t *is_alloc = read_exact(f, (size_t)n, argv[1], "is_alloc");
	int8_t *order = read_exact(f, (size_t)n, argv[1], "order");
	int32_t *offset = read_exact(f, (size_t)n * 4, argv[1], "offset");
	int64_t *obj = read_exact(f, (size_t)n * 8, argv[1], "obj");
	fclose(f);
	for (int64_t i = 0; i < n; i++) {
		if (obj[i] < 0 || obj[i] >= nobj || order[i] < 0 || order[i] > MAX_PAGE_ORDER) {
			fprintf(stderr, "buddy_ref: %s: event %lld: obj or order out of range\n",
				argv[1], (long long)i);
			return 2;
		}
	}
	blk_order = malloc((size_t)pages);
	nxt = malloc((size_t)pages * 4);
	prv = malloc((size_t)pages * 4);
	int64_t *placed = malloc((size_t)(nobj ? nobj : 1) * 8);
	int64_t *rows = malloc(sizeof(int64_t) * ROW * CHUNK);
	if (!blk_order || !nxt || !prv || !placed || !rows) {
		fprintf(stderr, "buddy_ref: out of memory\n");
		return 2;
	}
	FILE *out = NULL;
	if (steps_path && !(out = fopen(steps_path, "wb"))) {
		perror(steps_path);
		return 2;
	}
	for (int64_t x = 0; x < nobj; x++)
		placed[x] = -1;
	init_zone();

	struct timespec t0, t1, c0, c1;
	double io_s = 0;
	int64_t failures = 0, r = 0;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int64_t i = 0; i < n; i++) {
		int64_t x = obj[i], pfn = -1;
		if (is_alloc[i]) {
			pfn = rmqueue_smallest(order[i]);
			placed[x] = pfn;
			failures += pfn < 0;
		} else if (placed[x] >= 0) {
			free_pages(placed[x] + offset[i], order[i]);
		}
		int64_t *row = rows + r * ROW;
		row[0] = pfn;
		memcpy(row + 1, nr_free, sizeof nr_free);
		if (++r == CHUNK) {
			if (out) {
				struct timespec a, b;
				clock_gettime(CLOCK_MONOTONIC, &a);
				fwrite(rows, sizeof(int64_t) * ROW, (size_t)r, out);
				clock_gettime(CLOCK_MONOTONIC, &b);
				io_s += (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
			}
			r = 0;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	if (out) {
		fwrite(rows, sizeof(int64_t) * ROW, (size_t)r, out);
		if (fclose(out) != 0) {
			perror(steps_path);
			return 2;
		}
	}
	double kernel_s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9 - io_s;
	/* CPU time: what a loaded machine does not inflate (with --steps it includes the writes) */
	double kernel_cpu_s = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
	int64_t free_pages_total = 0;
	for (int k = 0; k < NR_PAGE_ORDERS; k++)
		free_pages_total += nr_free[k] << k;
	printf("{\"events\": %lld, \"kernel_s\": %.6f, \"events_per_s\": %.1f, "
	       "\"kernel_cpu_s\": %.6f, \"failures\": %lld, \"free_pages\": %lld, \"nr_free\": [",
	       (long long)n, kernel_s, kernel_s > 0 ? n / kernel_s : 0.0, kernel_cpu_s,
	       (long long)failures, (long long)free_pages_total);
	for (int k = 0; k < NR_PAGE_ORDERS; k++)
		printf("%s%lld", k ? ", " : "", (long long)nr_free[k]);
	printf("]}\n");
	return 0;
}
