/* Shared between ktrace.bpf.c and its loader ktrace.c.
 *
 * Loader output (stdout), the format of every twin loader (mapdump.h):
 *   ready <attach>                      once the program is attached
 *   map <name> <type> <key_size> <value_size> <ncpus>, then `e <key hex> <value hex>` per
 *                                       element, for each map, once stopped
 *   done                                the last line
 * The maps (every key 8 bytes, every value a __u64 count), as tests/twin_example/example.py decodes
 * them into the frames of the `ktrace` catalog entry:
 *   stack_counts  stack id -> count     @stacks[kstack] = count()   (ids resolved in stack_traces)
 *   hash_counts   skb->hash -> count    @hash[skb->hash] = count()
 *   len_hist      log2 slot -> count    @len = hist(skb->len), bpftrace's slots:
 *                                       0 = (..., 0), 1 = [0], k>=2 = [2^(k-2), 2^(k-1))
 */
#ifndef KTRACE_H
#define KTRACE_H

#define KTRACE_MAX_STACK 127

#endif
