// SPDX-License-Identifier: GPL-2.0
/* The generic loader of every generated twin (harness/spec/codegen_c.py): open any .bpf.o, fill
 * its rodata settings, load, attach every program, and on "stop" detach and print every map.
 * One loader for all specs: it knows nothing about the maps, the reader decodes them.
 *
 *   twinload OBJ.bpf.o [--set NAME=INT]... [--func NAME] [--signals-only] [--verbose]
 *
 * --set writes an integer into a `const volatile` global (target_pid, target_cgroup).
 * --func attaches kprobes/kretprobes and fentry/fexit to NAME instead of the name in SEC()
 * (a compiler clone such as udp_send_skb.isra.0 on this kernel).
 *
 * stdin is the control pipe: a line "stop" ends the trace; EOF (the harness died) detaches and
 * exits at once, so no BPF link outlives the harness. The loader also dies with its parent
 * (PR_SET_PDEATHSIG). SIGINT/SIGTERM act as "stop". --signals-only ignores stdin (a benchmark
 * driver that stops its tracers with SIGINT and does not give them a pipe).
 *
 * Output (stdout), one record per line: `ready <n programs>`, then on stop the map dump of
 * mapdump.h (`map ...` and `e ...` lines), then `done`.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "mapdump.h"

#define MAX_LINKS 16
#define MAX_SETS 16

static volatile sig_atomic_t stopping;
static int verbose;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Write `value` into the rodata variable `name`, found through the object's BTF. */
static int set_rodata(struct bpf_object *obj, const char *name, long long value)
{
	struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map;
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	size_t size;
	char *data;
	int id;

	if (!btf)
		return -ENOENT;
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		return -ENOENT;
	sec = btf__type_by_id(btf, id);
	bpf_object__for_each_map(map, obj) {
		const char *n = bpf_map__name(map);
		size_t len = strlen(n);

		if (bpf_map__is_internal(map) && len >= 7 && !strcmp(n + len - 7, ".rodata"))
			break;
	}
	if (!map)
		return -ENOENT;
	data = bpf_map__initial_value(map, &size);
	if (!data)
		return -ENOENT;
	vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);

		if (strcmp(btf__name_by_offset(btf, var->name_off), name))
			continue;
		if (vs->offset + vs->size > size || vs->size > sizeof(value))
			return -E2BIG;
		memcpy(data + vs->offset, &value, vs->size); /* little-endian hosts */
		return 0;
	}
	return -ENOENT;
}

static int is_kernel_function(const char *sec)
{
	return !strncmp(sec, "kprobe/", 7) || !strncmp(sec, "kretprobe/", 10) ||
	       !strncmp(sec, "fentry/", 7) || !strncmp(sec, "fexit/", 6);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *func = NULL;
	const char *set_names[MAX_SETS];
	long long set_values[MAX_SETS];
	struct bpf_link *links[MAX_LINKS];
	int nsets = 0, nlinks = 0, err = 0, control = 1;
	struct bpf_program *prog;
	struct bpf_object *obj;
	char line[64];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < MAX_SETS) {
			char *eq = strchr(argv[++i], '=');

			if (!eq) {
				fprintf(stderr, "error: --set needs NAME=INT, got '%s'\n", argv[i]);
				return 2;
			}
			*eq = '\0';
			set_names[nsets] = argv[i];
			set_values[nsets++] = strtoll(eq + 1, NULL, 0);
		} else if (!strcmp(argv[i], "--func") && i + 1 < argc) {
			func = argv[++i];
		} else if (!strcmp(argv[i], "--signals-only")) {
			control = 0;
		} else if (!strcmp(argv[i], "--verbose")) {
			verbose = 1;
		} else if (argv[i][0] != '-' && !path) {
			path = argv[i];
		} else {
			fprintf(stderr, "usage: %s OBJ.bpf.o [--set NAME=INT]... [--func NAME] [--signals-only] [--verbose]\n",
				argv[0]);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "error: no object file given\n");
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 3; /* the parent is already gone */
	libbpf_set_print(print_libbpf);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (int i = 0; i < nsets; i++) {
		err = set_rodata(obj, set_names[i], set_values[i]);
		if (err) {
			fprintf(stderr, "error: cannot set %s: %s\n", set_names[i], strerror(-err));
			goto out;
		}
	}
	bpf_object__for_each_program(prog, obj) {
		const char *sec = bpf_program__section_name(prog);

		if (func && (!strncmp(sec, "fentry/", 7) || !strncmp(sec, "fexit/", 6)))
			bpf_program__set_attach_target(prog, 0, func);
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "error: cannot load BPF object: %s\n", strerror(-err));
		goto out;
	}
	bpf_object__for_each_program(prog, obj) {
		const char *sec = bpf_program__section_name(prog);
		struct bpf_link *link;

		if (nlinks == MAX_LINKS) {
			fprintf(stderr, "error: more than %d programs\n", MAX_LINKS);
			err = -E2BIG;
			goto out;
		}
		if (func && (!strncmp(sec, "kprobe/", 7) || !strncmp(sec, "kretprobe/", 10)))
			link = bpf_program__attach_kprobe(prog, sec[1] == 'r', func); /* kretprobe/ */
		else
			link = bpf_program__attach(prog);
		err = libbpf_get_error(link);
		if (err) {
			fprintf(stderr, "error: cannot attach %s%s%s: %s\n", sec,
				func && is_kernel_function(sec) ? " to " : "",
				func && is_kernel_function(sec) ? func : "", strerror(-err));
			goto out;
		}
		links[nlinks++] = link;
	}
	printf("ready %d\n", nlinks);
	fflush(stdout);

	for (;;) {
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		int ready = poll(&pfd, control, 200); /* no fds: a 200 ms sleep */

		if (stopping)
			break;
		if (getppid() == 1) { /* orphaned: PDEATHSIG raced with start-up */
			err = -EPIPE;
			goto out;
		}
		if (ready <= 0)
			continue;
		if (!fgets(line, sizeof(line), stdin)) { /* EOF: the harness is gone */
			err = -EPIPE;
			goto out;
		}
		if (!strncmp(line, "stop", 4))
			break;
	}
	/* Detach first, so the maps are read while nothing updates them. */
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	nlinks = 0;
	err = dump_maps(obj);
	printf("done\n");
	fflush(stdout);
out:
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return err ? 1 : 0;
}
