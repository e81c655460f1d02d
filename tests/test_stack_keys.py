"""A stack key's print mode and frame limit come from the spec's expression tree (expr.Stack),
for the twin's key fields and stack-trace maps and for the frame's column names alike."""

from __future__ import annotations

import pytest
from spec_lines import line

from harness.spec import expr
from harness.spec.codegen_c import MAX_STACK, STACKS_MAP, KeyField, generate_c
from harness.spec.model import column_name


def test_the_twin_keys_hold_the_parsed_stack_and_size_its_maps_from_it() -> None:
    spec = line("kprobe:udp_send_skb", "--count-by", "kstack(perf, 8)", "--count-by", "kstack")
    twin = generate_c(spec)
    stacks = [k for m in twin.maps for k in m.keys if k.kind == "kstack"]
    assert [(k.stack, k.depth, k.mode, k.stack_map) for k in stacks] == [
        (expr.Stack("kstack", "perf", 8), 8, "perf", f"{STACKS_MAP}_8"),
        (expr.Stack("kstack"), MAX_STACK, "bpftrace", STACKS_MAP),
    ]
    # each stack-trace map holds as many frames as its keys' tree says
    assert f"__uint(value_size, 8 * sizeof(__u64));\n}} {STACKS_MAP}_8 SEC" in twin.text
    assert f"__uint(value_size, {MAX_STACK} * sizeof(__u64));\n}} {STACKS_MAP} SEC" in twin.text


def test_a_key_field_without_a_stack_resolves_in_the_default_map() -> None:
    kf = KeyField("kstack", "stack_id", "kstack")
    assert (kf.stack_map, kf.mode, kf.depth) == ("", "bpftrace", MAX_STACK)


@pytest.mark.parametrize(("text", "column"), [
    ("kstack", "kstack"), ("kstack(perf, 8)", "kstack"), ("kstack (raw)", "kstack"),
    ("ustack(3)", "ustack"), ("skb->hash", "hash"), ("args.len", "len"), ("comm", "comm"),
    ("kstackx", "kstackx"),  # a name that merely starts like a stack is no stack
])
def test_column_names_read_stacks_from_the_tree(text: str, column: str) -> None:
    assert column_name(text) == column
