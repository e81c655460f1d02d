/* Deterministic UDP workload, the C twin of udp_send.py (same options, output and messages):
 * exactly N datagrams of given sizes to a bound loopback receiver.
 *
 * Senders are connected sockets, so the kernel gives each a random flow hash (sk_txhash) that
 * every skb it sends carries in skb->hash: --sockets K gives K distinct hash values to collect.
 * The receiver is bound first so no ICMP port-unreachable replies add sends of their own. The
 * pid is printed first and, unless --no-wait, the sender waits for a line on stdin ("go") so
 * tracers can attach with a filter on that pid before the first datagram leaves.
 *
 * Why C: under TCG a Python's start-up alone takes 1-2 s of every run in a guest; this binary
 * starts in milliseconds. udp_send.py builds it (harness.workloads.native) and runs the Python
 * loop only where no compiler is found.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES 4096
#define MAX_SOCKETS 4096
#define MAX_DATAGRAM 65507

static long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A bad value: the line and status udp_send.py's SystemExit gives. */
static int die(const char *message)
{
	fprintf(stderr, "udp_send: %s\n", message);
	return 1;
}

/* A whole non-negative decimal number (as Python's str.isdigit() and int() take it). */
static int number(const char *text, long long *out)
{
	if (!*text)
		return 0;
	long long value = 0;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9' || value > 1000000000000LL)
			return 0;
		value = value * 10 + (*p - '0');
	}
	*out = value;
	return 1;
}

/* '1,100,1000' -> sizes; empty parts are skipped, as udp_send.py does. */
static int parse_sizes(char *text, int *sizes, int *n)
{
	*n = 0;
	for (char *part = strtok(text, ","); part; part = strtok(NULL, ",")) {
		while (*part == ' ' || *part == '\t')
			part++;
		char *end = part + strlen(part);
		while (end > part && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!*part)
			continue;
		long long size;
		if (*part == '-' && number(part + 1, &size))
			return -1; /* an integer, out of range */
		if (!number(part, &size) || *n >= MAX_SIZES)
			return 0;
		if (size > MAX_DATAGRAM)
			return -1;
		sizes[(*n)++] = (int)size;
	}
	return *n > 0 ? 1 : -1;
}

int main(int argc, char **argv)
{
	long long count = 100, sockets = 2;
	int no_wait = 0;
	char sizes_text[65536] = "1,100,1000";
	static int sizes[MAX_SIZES];
	int nsizes = 0;

	for (int i = 1; i < argc; i++) {
		char *word = argv[i], *value = NULL;
		char *eq = strchr(word, '=');
		if (strcmp(word, "--no-wait") == 0) {
			no_wait = 1;
			continue;
		}
		if (eq) {
			*eq = '\0';
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		}
		if (!value) {
			fprintf(stderr, "udp_send: %s takes a value\n", word);
			return 2;
		}
		if (strcmp(word, "--count") == 0) {
			if (!number(value, &count))
				return die("--count must be >= 0 and --sockets >= 1");
		} else if (strcmp(word, "--sockets") == 0) {
			if (!number(value, &sockets) || sockets < 1)
				return die("--count must be >= 0 and --sockets >= 1");
		} else if (strcmp(word, "--sizes") == 0) {
			if (strlen(value) >= sizeof(sizes_text))
				return die("each size must be between 0 and 65507 bytes");
			strcpy(sizes_text, value);
		} else {
			fprintf(stderr, "udp_send: unknown option %s (takes --count N, --sizes A,B,.., "
				"--sockets K, --no-wait)\n", word);
			return 2;
		}
	}
	char said[sizeof(sizes_text)];
	strcpy(said, sizes_text); /* parse_sizes cuts its copy up */
	int parsed = parse_sizes(sizes_text, sizes, &nsizes);
	if (parsed == 0) {
		fprintf(stderr, "udp_send: --sizes takes integers like 1,100, got '%s'\n", said);
		return 1;
	}
	if (parsed < 0)
		return die("each size must be between 0 and 65507 bytes");
	if (sockets > MAX_SOCKETS)
		return die("--sockets must be at most 4096");

	int rx = socket(AF_INET, SOCK_DGRAM, 0);
	int rcvbuf = 1 << 22;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	if (rx < 0 || setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0 ||
	    bind(rx, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    getsockname(rx, (struct sockaddr *)&addr, &len) != 0) {
		perror("udp_send: receiver");
		return 1;
	}
	static int tx[MAX_SOCKETS];
	for (long long s = 0; s < sockets; s++) {
		tx[s] = socket(AF_INET, SOCK_DGRAM, 0);
		if (tx[s] < 0 || connect(tx[s], (struct sockaddr *)&addr, sizeof(addr)) != 0) {
			perror("udp_send: sender");
			return 1;
		}
	}
	printf("%d\n", (int)getpid());
	fflush(stdout);
	if (!no_wait) {
		char line[64];
		if (!fgets(line, sizeof(line), stdin)) { /* as readline() at EOF: go on */
		}
	}

	static char payload[MAX_DATAGRAM], buffer[65536];
	memset(payload, 'x', sizeof(payload));
	long long received = 0;
	long long start = now_ns(CLOCK_MONOTONIC), cpu_start = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long long i = 0; i < count; i++) {
		if (send(tx[i % sockets], payload, (size_t)sizes[i % nsizes], 0) < 0) {
			perror("udp_send: send");
			return 1;
		}
		/* Drain as we go so the receive buffer never drops (and so never sends anything else). */
		while (recv(rx, buffer, sizeof(buffer), MSG_DONTWAIT) >= 0)
			received++;
	}
	struct timeval five = {.tv_sec = 5};
	setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof(five));
	while (received < count) {
		if (recv(rx, buffer, sizeof(buffer), 0) < 0) {
			perror("udp_send: receive");
			return 1;
		}
		received++;
	}
	/* loopback's softirq work runs in this thread too */
	long long cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
	long long elapsed = now_ns(CLOCK_MONOTONIC) - start;
	printf("sent %lld received %lld\n", count, received);
	/* compare.bench reads it: wall time and this thread's CPU time around the loop */
	printf("events %lld elapsed_ns %lld cpu_ns %lld\n", count, elapsed, cpu);
	fflush(stdout);
	return 0;
}
