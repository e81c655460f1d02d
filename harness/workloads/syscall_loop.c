/* Syscall workload for benchmarks: exactly N getppid() system calls in a tight loop.
 *
 * Protocol (shared with harness/workloads/udp_send.py so harness.compare.bench drives both the same way):
 *   prints "pid <pid>", then with --wait-go blocks until a line arrives on stdin (the tracer is
 *   attached by then), runs the loop, and prints "events <N> elapsed_ns <ns> cpu_ns <ns>" timed
 *   around the loop alone (process start-up is not part of the per-event cost): wall time and
 *   the CPU time this thread used (its syscalls and the probes they ran included; the time other
 *   processes held the CPU left out, which a shared machine's wall clock is full of).
 * syscall(SYS_getppid) is used so libc can never answer from a cache.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long count = 1000000;
	int wait_go = 0;
	char line[64];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = atoll(argv[++i]);
		else if (strcmp(argv[i], "--wait-go") == 0)
			wait_go = 1;
		else {
			fprintf(stderr, "usage: %s [--count N] [--wait-go]\n", argv[0]);
			return 2;
		}
	}
	printf("pid %d\n", (int)getpid());
	fflush(stdout);
	if (wait_go && !fgets(line, sizeof(line), stdin))
		return 3;
	long long start = now_ns(CLOCK_MONOTONIC);
	long long cpu_start = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long long i = 0; i < count; i++)
		syscall(SYS_getppid);
	long long cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
	long long elapsed = now_ns(CLOCK_MONOTONIC) - start;
	printf("events %lld elapsed_ns %lld cpu_ns %lld\n", count, elapsed, cpu);
	fflush(stdout);
	return 0;
}
