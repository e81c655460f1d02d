"""Codegen's AOT mode: bpftrace --aot refuses every cast, so with a kernel's field offsets the
spec's member reads through casts are written from the tree as reads at those offsets. Pure
Python: the offsets come from a table here, not from a kernel."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from spec_lines import line

from harness.spec import catalog
from harness.spec.codegen import FieldOffsets, generate
from harness.spec.model import ProbeSpec
from harness.spec.plan import Plan, Programs


@dataclass(frozen=True)
class Member:
    offset: int
    size: int
    signed: bool = False
    kind: str = "int"


LAYOUT = {("sk_buff", "hash"): Member(148, 4), ("sk_buff", "len"): Member(112, 4),
          ("sk_buff", "tstamp"): Member(16, 8), ("sk_buff", "sk"): Member(24, 8, kind="ptr"),
          ("sk_buff", "offset"): Member(40, 2, signed=True), ("sk_buff", "odd"): Member(44, 3),
          ("sk_buff", "mark"): Member(168, 1)}


def layout(struct: str, member: str) -> Member | None:
    return LAYOUT.get((struct, member))


def plan_of(spec: ProbeSpec) -> Plan:
    return Plan("t", spec, spec.probe.kind, "", "KTRACE_READY_1", (0, 17, 0))


KTRACE = catalog.get("ktrace").equivalents["kprobe"]


def test_ktraces_casts_are_reads_at_the_given_offsets() -> None:
    programs = Programs(plan_of(KTRACE))
    plain = programs(4242)
    assert "((struct sk_buff *)arg0)->hash" in plain and "((struct sk_buff *)arg0)->len" in plain
    text, said = programs.portable(4242, layout)
    # the independent reading: the same program, each cast member read replaced by hand
    assert text == (plain.replace("((struct sk_buff *)arg0)->hash", "(*(arg0 + 148) & 0xffffffff)")
                    .replace("((struct sk_buff *)arg0)->len", "(*(arg0 + 112) & 0xffffffff)"))
    assert "struct" not in text
    assert said == "sk_buff.hash at +148 (4 bytes), sk_buff.len at +112 (4 bytes)"
    assert programs.ran == [plain]  # the portable text is not the run's program


def test_casts_in_filters_keys_and_values_are_written_from_the_tree() -> None:
    spec = line("kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *",
                "--filter", "((struct sk_buff *)arg0)->len > 100", "--count-by", "skb->mark",
                "--sum", "skb->tstamp")
    offsets = FieldOffsets(layout)
    text = generate(spec, "kprobe", (0, 17, 0), "KTRACE_READY_1", offsets=offsets)
    assert "struct" not in text
    assert "/((*(arg0 + 112) & 0xffffffff) > 100)/" in text
    assert "@count[(*(arg0 + 168) & 0xff)]" in text
    assert "sum((*(arg0 + 16)))" in text  # 8 bytes: no mask
    assert sorted(offsets.asked) == [("sk_buff", "len"), ("sk_buff", "mark"), ("sk_buff", "tstamp")]
    assert generate(spec, "kprobe", (0, 17, 0), "KTRACE_READY_1") == \
        generate(spec, "kprobe", (0, 17, 0), "KTRACE_READY_1", offsets=None)


@pytest.mark.parametrize(("member", "why"), [
    ("sk", "a pointer"), ("offset", "signed"), ("odd", "odd-sized"), ("nope", "not in its BTF"),
])
def test_a_member_that_cannot_be_read_so_gives_no_program(member: str, why: str) -> None:
    spec = line("kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *",
                "--collect", f"skb->{member}", "--hist", "skb->len")
    text, said = Programs(plan_of(spec)).portable(None, layout)
    assert text is None and said == f"sk_buff.{member} is {why}"


def test_only_programs_reading_members_through_casts_need_offsets() -> None:
    assert Programs(plan_of(KTRACE)).reads_through_casts()
    # the tracepoint equivalent reads through a cast of args.skbaddr, no register: unchanged
    tp = catalog.get("ktrace").equivalents["tracepoint"]
    assert not Programs(plan_of(tp)).reads_through_casts()
    offsets = FieldOffsets(layout)
    assert generate(tp, offsets=offsets, pid=7) == \
        generate(tp, pid=7)
    assert offsets.asked == []
    syscalls = line("tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm")
    assert not Programs(plan_of(syscalls)).reads_through_casts()
    literal = Plan("{}", None, "as written", "", "KTRACE_READY_1", (0, 17, 0),
                   literal="kprobe:f { @[((struct sk_buff *)arg0)->len] = count(); }")
    assert not Programs(literal).reads_through_casts()  # text as written: no tree to rewrite
