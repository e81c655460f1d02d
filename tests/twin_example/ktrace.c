// SPDX-License-Identifier: GPL-2.0
/* Loader of ktrace.bpf.c, written by hand against its bpftool skeleton: attach one of its
 * programs for one target pid, count until stopped, then print every map in the dump format of
 * every twin loader (mapdump.h, documented in ktrace.h).
 *
 *   ktrace --attach kprobe|kfunc|tracepoint [--pid N] [--func NAME] [--verbose]
 *
 * stdin is the control pipe: a line "stop", or its end (the harness exited, however it died),
 * ends the trace, so the program and link never outlive the harness; the loader also dies with
 * its parent (PR_SET_PDEATHSIG). SIGINT/SIGTERM also stop it.
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
#include <sys/prctl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "ktrace.h"
#include "ktrace.skel.h"
#include "mapdump.h"

static volatile sig_atomic_t stopping;
static int verbose;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* True once stdin says stop: a "stop" line, or the pipe closed or broken. */
static int told_to_stop(void)
{
	struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
	char buf[256];
	ssize_t n;

	if (poll(&pfd, 1, 100) <= 0) /* also the wait between checks */
		return 0;
	if (!(pfd.revents & POLLIN))
		return 1; /* POLLHUP, POLLERR or POLLNVAL */
	n = read(STDIN_FILENO, buf, sizeof(buf));
	return n <= 0 || !strncmp(buf, "stop", 4);
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Load only the program of the attach type asked for; the others stay unloaded. */
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
	struct ktrace_bpf *skel;
	long pid = 0;
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
		else {
			fprintf(stderr, "usage: %s --attach kprobe|kfunc|tracepoint [--pid N] [--func NAME] [--verbose]\n",
				argv[0]);
			return 2;
		}
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
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
	printf("ready %s\n", attach);
	fflush(stdout);
	while (!stopping && !told_to_stop())
		;
	ktrace_bpf__detach(skel); /* nothing updates the maps while they are read */
	err = dump_maps(skel->obj);
	printf("done\n");
	fflush(stdout);
out:
	ktrace_bpf__destroy(skel);
	return err ? 1 : 0;
}
