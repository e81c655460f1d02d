/* Concurrency workload for the exact-count test: two threads pinned to different CPUs make the
 * same sequence of getpgid(BASE + i) calls in lockstep (a barrier before each), so every
 * argument is a NEW map key that both CPUs insert at nearly the same moment. That is the race
 * in which an insert with BPF_NOEXIST fails with -EEXIST; an exact tracer still counts 2 per key.
 *
 *   race_keys [--count N] [--base B]     prints "pid <pid>", then "events <2N>" when done
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t barrier;
static long count = 1000, base = 4000000;

static void *run(void *arg)
{
	long cpu = (long)arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % sysconf(_SC_NPROCESSORS_ONLN), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	for (long i = 0; i < count; i++) {
		pthread_barrier_wait(&barrier);
		syscall(SYS_getpgid, base + i); /* no such pid: ESRCH, the argument is the key */
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[2];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atol(argv[++i]);
		else if (!strcmp(argv[i], "--base") && i + 1 < argc)
			base = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--count N] [--base B]\n", argv[0]);
			return 2;
		}
	}
	printf("pid %d\n", (int)getpid());
	fflush(stdout);
	pthread_barrier_init(&barrier, NULL, 2);
	for (long t = 0; t < 2; t++)
		pthread_create(&threads[t], NULL, run, (void *)t);
	for (int t = 0; t < 2; t++)
		pthread_join(threads[t], NULL);
	printf("events %ld\n", 2 * count);
	return 0;
}
