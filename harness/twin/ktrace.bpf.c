// SPDX-License-Identifier: GPL-2.0
/* The CO-RE twin of the harness's `ktrace` probe: at udp_send_skb (or the net:net_dev_queue
 * tracepoint on kernels without kprobes) count kernel stacks, histogram skb->len with bpftrace's
 * log2 slots, and stream (skb->hash, skb->len) per event, for one target process.
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} stack_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KTRACE_HIST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} len_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

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

static __always_inline void bump(void *map, __u32 key)
{
	__u64 one = 1, *count = bpf_map_lookup_elem(map, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

static __always_inline int record(void *ctx, struct sk_buff *skb)
{
	struct ktrace_event *ev;
	__u32 len, zero = 0;
	__s64 stack_id;

	if (target_pid && (bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	len = BPF_CORE_READ(skb, len);
	stack_id = bpf_get_stackid(ctx, &stack_traces, 0);
	if (stack_id >= 0)
		bump(&stack_counts, (__u32)stack_id);
	bump(&len_hist, log2_slot(len));
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		bump(&lost, zero);
		return 0;
	}
	ev->hash = BPF_CORE_READ(skb, hash);
	ev->len = len;
	/* No wakeup per event: the loader drains every 100 ms, so a send costs no reader wakeup. */
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
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
	return record(ctx, (struct sk_buff *)ctx->skbaddr);
}
