/* Shared between ktrace.bpf.c and its loader ktrace.c.
 *
 * Loader output (stdout, one record per line, printed when stopped by SIGINT/SIGTERM):
 *   ready <attach>                      once every program is attached
 *   event <hash> <len>                  one per traced send (decimal), in arrival order
 *   stack <count> <ip>[,<ip>...]        kernel stack (hex addresses, leaf first) and its count
 *   hist <slot> <count>                 log2 histogram of skb->len, bpftrace's slots:
 *                                       slot 0 = (..., 0), 1 = [0], 2 = [1], k>=2 = [2^(k-2), 2^(k-1))
 *   lost <n>                            ring-buffer records dropped (must be 0 for a crosscheck)
 *   done                                the last line
 */
#ifndef KTRACE_H
#define KTRACE_H

#define KTRACE_HIST_SLOTS 66
#define KTRACE_MAX_STACK 127

struct ktrace_event {
	unsigned int hash;
	unsigned int len;
};

#endif
