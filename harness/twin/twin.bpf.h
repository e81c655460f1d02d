/* The fixed part of every generated twin (harness/spec/codegen_c.py), shipped with the package
 * and #included by each generated .bpf.c, so a twin's own file holds only what its spec makes:
 * its maps, its filters and its handler. build_twin compiles with -I on this directory.
 *
 *   twin_drops      events that found no map element, and inserts retried after a lost race
 *   element()       this CPU's element of a per-CPU map, created on first use
 *   log2_slot()     bpftrace's hist() slot
 *   lhist_slot()    bpftrace's lhist() slot
 *
 * Header-only (a map and static inline functions): each twin is one translation unit.
 */
#ifndef TWIN_BPF_H
#define TWIN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define EEXIST 17 /* errno.h's value: vmlinux.h carries no errno macros */

/* [0]: events that found no map element (a full map; a crosscheck requires 0);
 * [1]: inserts that lost the race for a new key to another CPU and were retried. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} twin_drops SEC(".maps");

/* min/max: the extreme so far on this CPU, and whether there is one. */
struct twin_extreme {
	__s64 value;
	__u64 seen;
};

/* avg/stats: total and count on this CPU (the reader sums CPUs, then divides). */
struct twin_total {
	__s64 total;
	__u64 count;
};

/* This CPU's element of a per-CPU map for `key`, created on first use. When two CPUs create
 * the same new key at once, one BPF_NOEXIST insert fails with -EEXIST; the second lookup then
 * finds the winner's element (zeroed for every CPU), so neither event is lost. */
static __always_inline void *element(void *map, const void *key)
{
	const __u64 zero[2] = {};
	__u32 what = 0;
	__u64 *n;
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	if (bpf_map_update_elem(map, key, zero, BPF_NOEXIST) == -EEXIST)
		what = 1; /* another CPU created it first: use that element */
	v = bpf_map_lookup_elem(map, key);
	if (!v || what) {
		n = bpf_map_lookup_elem(&twin_drops, &what);
		if (n)
			*n += 1;
	}
	return v;
}

/* bpftrace's hist() slot: 0 for negatives, 1 for 0, else 2 + floor(log2(v)). */
static __always_inline __u64 log2_slot(__s64 value)
{
	__u64 v = value, slot = 2;

	if (value < 0)
		return 0;
	if (v == 0)
		return 1;
#pragma unroll
	for (int bit = 32; bit > 0; bit >>= 1) {
		if (v >= ((__u64)1 << bit)) {
			v >>= bit;
			slot += bit;
		}
	}
	return slot;
}

/* bpftrace's lhist() slot: 0 below min, 1 + (v - min) / step inside, the last at max and above. */
static __always_inline __u64 lhist_slot(__s64 v, __s64 min, __s64 max, __s64 step)
{
	if (v < min)
		return 0;
	if (v >= max)
		return (__u64)(max - min) / step + 1;
	return (__u64)(v - min) / step + 1;
}

#endif /* TWIN_BPF_H */
