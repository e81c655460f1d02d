// SPDX-License-Identifier: GPL-2.0
/* Loader of ktrace.bpf.c: attach one of its programs for one target pid, collect until SIGINT or
 * SIGTERM, then print the results in the line format documented in ktrace.h.
 *
 *   ktrace --attach kprobe|kfunc|tracepoint [--pid N] [--func NAME] [--verbose] [--control-stdin]
 *
 * With --control-stdin, stdin is the control pipe: when it closes (the harness exited, however it died) the loader stops
 * and exits, so its program and link never outlive the harness.
 *
 * --func names the kernel function when it is a compiler clone on this kernel
 * (udp_send_skb.isra.0): kprobes attach to it by name, fentry resolves it in BTF before load.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "ktrace.h"
#include "ktrace.skel.h"

static volatile sig_atomic_t stopping;
static int verbose;
static int control_stdin;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* True once the control pipe (stdin) is closed or broken: the harness is gone. */
static int control_closed(void)
{
	struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
	char buf[256];

	if (!control_stdin || poll(&pfd, 1, 0) <= 0)
		return 0;
	if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
		return 1;
	return read(STDIN_FILENO, buf, sizeof(buf)) == 0;
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

struct event_log {
	struct ktrace_event *items;
	size_t len, cap;
};

static int on_event(void *ctx, void *data, size_t size)
{
	struct event_log *log = ctx;

	if (size < sizeof(struct ktrace_event))
		return 0;
	if (log->len == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 1024;
		void *grown = realloc(log->items, cap * sizeof(*log->items));

		if (!grown)
			return -ENOMEM;
		log->items = grown;
		log->cap = cap;
	}
	log->items[log->len++] = *(struct ktrace_event *)data;
	return 0;
}

static void print_stacks(struct ktrace_bpf *skel)
{
	int counts_fd = bpf_map__fd(skel->maps.stack_counts);
	int traces_fd = bpf_map__fd(skel->maps.stack_traces);
	__u64 ips[KTRACE_MAX_STACK];
	__u32 key, next, *prev = NULL;
	__u64 count;

	while (bpf_map_get_next_key(counts_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(counts_fd, &key, &count))
			continue;
		memset(ips, 0, sizeof(ips));
		if (bpf_map_lookup_elem(traces_fd, &key, ips))
			continue;
		printf("stack %llu ", (unsigned long long)count);
		for (int i = 0; i < KTRACE_MAX_STACK && ips[i]; i++)
			printf("%s0x%llx", i ? "," : "", (unsigned long long)ips[i]);
		printf("\n");
	}
}

static void print_hist(struct ktrace_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.len_hist);
	__u64 count;

	for (__u32 slot = 0; slot < KTRACE_HIST_SLOTS; slot++)
		if (bpf_map_lookup_elem(fd, &slot, &count) == 0 && count)
			printf("hist %u %llu\n", slot, (unsigned long long)count);
}

static int choose(struct ktrace_bpf *skel, const char *attach)
{
	struct bpf_program *progs[] = { skel->progs.ktrace_kprobe, skel->progs.ktrace_kfunc,
					skel->progs.ktrace_tracepoint };
	const char *names[] = { "kprobe", "kfunc", "tracepoint" };
	int found = -1;

	for (int i = 0; i < 3; i++) {
		int on = strcmp(attach, names[i]) == 0;

		bpf_program__set_autoload(progs[i], on);
		if (on)
			found = i;
	}
	return found;
}

int main(int argc, char **argv)
{
	const char *attach = "kprobe";
	const char *func = NULL;
	struct event_log log = { 0 };
	struct ring_buffer *rb = NULL;
	struct ktrace_bpf *skel;
	long pid = 0;
	__u32 zero = 0;
	__u64 lost = 0;
	int err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--attach") && i + 1 < argc)
			attach = argv[++i];
		else if (!strcmp(argv[i], "--pid") && i + 1 < argc)
			pid = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--func") && i + 1 < argc)
			func = argv[++i];
		else if (!strcmp(argv[i], "--verbose"))
			verbose = 1;
		else if (!strcmp(argv[i], "--control-stdin"))
			control_stdin = 1;
		else {
			fprintf(stderr, "usage: %s --attach kprobe|kfunc|tracepoint [--pid N] [--func NAME] [--verbose] [--control-stdin]\n",
				argv[0]);
			return 2;
		}
	}
	libbpf_set_print(print_libbpf);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	skel = ktrace_bpf__open();
	if (!skel) {
		fprintf(stderr, "error: cannot open BPF skeleton: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->target_pid = (__u32)pid;
	if (choose(skel, attach) < 0) {
		fprintf(stderr, "error: unknown attach type '%s'\n", attach);
		err = 2;
		goto out;
	}
	if (func && !strcmp(attach, "kfunc"))
		bpf_program__set_attach_target(skel->progs.ktrace_kfunc, 0, func);
	err = ktrace_bpf__load(skel);
	if (err) {
		fprintf(stderr, "error: cannot load BPF object: %s\n", strerror(-err));
		goto out;
	}
	if (func && !strcmp(attach, "kprobe")) {
		skel->links.ktrace_kprobe =
			bpf_program__attach_kprobe(skel->progs.ktrace_kprobe, false, func);
		err = libbpf_get_error(skel->links.ktrace_kprobe);
		if (err)
			skel->links.ktrace_kprobe = NULL;
	} else {
		err = ktrace_bpf__attach(skel);
	}
	if (err) {
		fprintf(stderr, "error: cannot attach %s: %s\n", attach, strerror(-err));
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, &log, NULL);
	if (!rb) {
		err = -errno;
		fprintf(stderr, "error: cannot open ring buffer: %s\n", strerror(errno));
		goto out;
	}
	printf("ready %s\n", attach);
	fflush(stdout);
	while (!stopping && !control_closed()) {
		/* Events are submitted without wakeups: wait out the interval, then drain. */
		err = ring_buffer__poll(rb, 100);
		if (err >= 0 || err == -EINTR)
			err = ring_buffer__consume(rb);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "error: ring buffer poll: %s\n", strerror(-err));
			goto out;
		}
	}
	ring_buffer__consume(rb);
	for (size_t i = 0; i < log.len; i++)
		printf("event %u %u\n", log.items[i].hash, log.items[i].len);
	print_stacks(skel);
	print_hist(skel);
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.lost), &zero, &lost);
	printf("lost %llu\ndone\n", (unsigned long long)lost);
	err = 0;
out:
	ring_buffer__free(rb);
	ktrace_bpf__destroy(skel);
	free(log.items);
	return err ? 1 : 0;
}
