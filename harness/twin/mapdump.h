/* The map dump both loaders print (twinload.c for generated twins, ktrace.c for the hand-written
 * example), so the harness decodes every twin's maps in one place (harness/twin/generic.py):
 *
 *   map <name> <type> <key_size> <value_size> <ncpus>   ncpus: values per key (1 unless per-CPU)
 *   e <key hex> <value hex>                            per-CPU values concatenated, 8-aligned
 *
 * Header-only (static functions): each loader is one translation unit.
 */
#ifndef MAPDUMP_H
#define MAPDUMP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static void print_hex(const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		putchar(digits[p[i] >> 4]);
		putchar(digits[p[i] & 15]);
	}
}

static int is_percpu(enum bpf_map_type type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

/* Print every element of every map the program declared (not rodata/bss). */
static int dump_maps(struct bpf_object *obj)
{
	int ncpus = libbpf_num_possible_cpus();
	struct bpf_map *map;

	if (ncpus < 1)
		return -EINVAL;
	bpf_object__for_each_map(map, obj) {
		enum bpf_map_type type = bpf_map__type(map);
		size_t ksize = bpf_map__key_size(map), vsize = bpf_map__value_size(map);
		int n = is_percpu(type) ? ncpus : 1, fd = bpf_map__fd(map);
		size_t stride = is_percpu(type) ? (vsize + 7) / 8 * 8 : vsize;
		unsigned char *key, *next, *value;
		int first = 1;

		if (bpf_map__is_internal(map))
			continue;
		printf("map %s %d %zu %zu %d\n", bpf_map__name(map), type, ksize, vsize, n);
		key = calloc(1, ksize);
		next = calloc(1, ksize);
		value = calloc(n, stride);
		if (!key || !next || !value) {
			free(key);
			free(next);
			free(value);
			return -ENOMEM;
		}
		while (bpf_map_get_next_key(fd, first ? NULL : key, next) == 0) {
			first = 0;
			memcpy(key, next, ksize);
			if (bpf_map_lookup_elem(fd, key, value))
				continue;
			printf("e ");
			print_hex(key, ksize);
			putchar(' ');
			print_hex(value, n * stride);
			putchar('\n');
		}
		free(key);
		free(next);
		free(value);
	}
	return 0;
}

#endif
