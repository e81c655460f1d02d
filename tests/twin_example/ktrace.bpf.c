// SPDX-License-Identifier: GPL-2.0
/* The CO-RE twin of the harness's `ktrace` probe, written by hand: at udp_send_skb (or the
 * net:net_dev_queue tracepoint on kernels without kprobes) count kernel stacks, count each
 * skb->hash and histogram skb->len with bpftrace's log2 slots, for one target process.
 * A readable example of what harness/spec/codegen_c.py generates for the same spec; a test
 * checks that both twins count the same sends alike.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ktrace.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_pid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, KTRACE_MAX_STACK * sizeof(__u64));
} stack_traces SEC(".maps");

/* Three count maps keyed by 8-byte values: stack id, skb->hash, histogram slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __s64);
	__type(value, __u64);
} stack_counts SEC(".maps"), hash_counts SEC(".maps"), len_hist SEC(".maps");

/* bpftrace's log2 slot for an unsigned value: 0 -> 1, else 2 + floor(log2(v)). */
static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 slot = 2;

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

#define EEXIST 17 /* errno.h's value: vmlinux.h carries no errno macros */

/* count[key] += 1. When two CPUs insert the same new key at once, one BPF_NOEXIST insert fails
 * with -EEXIST: that CPU adds to the winner's element instead of losing its event. */
static __always_inline void bump(void *map, __s64 key)
{
	__u64 one = 1, *count = bpf_map_lookup_elem(map, &key);

	if (!count && bpf_map_update_elem(map, &key, &one, BPF_NOEXIST) != -EEXIST)
		return;
	if (!count)
		count = bpf_map_lookup_elem(map, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline int record(void *ctx, struct sk_buff *skb)
{
	__s64 stack_id;

	if (target_pid && (bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	stack_id = bpf_get_stackid(ctx, &stack_traces, 0);
	if (stack_id >= 0)
		bump(&stack_counts, stack_id);
	bump(&hash_counts, BPF_CORE_READ(skb, hash));
	bump(&len_hist, log2_slot(BPF_CORE_READ(skb, len)));
	return 0;
}

SEC("kprobe/udp_send_skb")
int BPF_KPROBE(ktrace_kprobe, struct sk_buff *skb)
{
	return record(ctx, skb);
}

SEC("fentry/udp_send_skb")
int BPF_PROG(ktrace_kfunc, struct sk_buff *skb)
{
	return record(ctx, skb);
}

SEC("tp/net/net_dev_queue")
int ktrace_tracepoint(struct trace_event_raw_net_dev_template *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->skbaddr;

	/* A device queues every socket's packets (a softirq's under whichever task is current);
	 * udp_send_skb sees only UDP sockets' (17: IPPROTO_UDP). */
	if (BPF_CORE_READ(skb, sk, sk_protocol) != 17)
		return 0;
	return record(ctx, skb);
}
