"""The generated libbpf twin: C from the spec, the generic loader, and exact crosschecks."""

from __future__ import annotations

import json
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest
from bench_files import programs_measured
from spec_lines import line

from harness.api.crosscheck import run_crosscheck
from harness.api.planner import resolve_spec
from harness.cli import main
from harness.compare.crosscheck import twin_program
from harness.errors import UsageError
from harness.spec import catalog
from harness.spec.codegen_c import NoTwin, generate_c, parse_tracepoint_format

NET_DEV_QUEUE = """name: net_dev_queue
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int len;\toffset:16;\tsize:4;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:20;\tsize:4;\tsigned:0;
"""


def test_tracepoint_format_gives_the_record_layout() -> None:
    fields = parse_tracepoint_format(NET_DEV_QUEUE)
    assert [(f.name, f.offset, f.size, f.signed, f.scalar) for f in fields] == [
        ("skbaddr", 8, 8, False, True),
        ("len", 16, 4, False, True),
        ("name", 20, 4, False, False),
    ]


def test_generated_c_reads_like_the_spec() -> None:
    spec = catalog.get("ktrace").equivalents["tracepoint"]
    text = generate_c(spec, tracepoint_format=NET_DEV_QUEUE).text
    assert 'SEC("tp/net/net_dev_queue")' in text
    assert "/* @stacks[kstack] = count() */" in text and "/* @len = hist(skb->len) */" in text
    assert "BPF_CORE_READ(((struct sk_buff *)(unsigned long)args_skbaddr), len)" in text
    assert "bpf_get_stackid(ctx, &twin_stacks, 0)" in text
    assert "BPF_MAP_TYPE_PERCPU_HASH" in text and "v = element(&map_len, &key);" in text


def test_the_fixed_c_is_one_shipped_header_not_a_copy_per_twin() -> None:
    """element(), twin_drops and the slot helpers live once, in harness/twin/twin.bpf.h; every
    generated file #includes it and defines none of them itself."""
    from harness.twin.build import TWIN_HEADER, source_dir

    shared = (source_dir() / TWIN_HEADER).read_text()
    for spec in (catalog.get("ktrace").equivalents["tracepoint"],
                 line("kprobe:f", "--lhist", "arg0:0:10:2", "--max", "arg1")):
        text = generate_c(spec, tracepoint_format=NET_DEV_QUEUE).text
        assert f'#include "{TWIN_HEADER}"' in text
        assert "static __always_inline" not in text and "} twin_drops SEC" not in text
    for name in ("*element(void *map", "log2_slot(__s64", "lhist_slot(__s64", "} twin_drops SEC",
                 "struct twin_extreme {", "struct twin_total {", "#define EEXIST"):
        assert shared.count(name) == 1, name


def test_kernel_function_probes_get_their_macros() -> None:
    kp = line("kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *", "--sum", "skb->len")
    assert "int BPF_KPROBE(twin_probe, struct sk_buff * arg_skb)" in generate_c(kp).text
    kr = line("kretprobe:udp_send_skb", "--count-by", "retval")
    assert "int BPF_KRETPROBE(twin_probe)" in (t := generate_c(kr).text) and "PT_REGS_RC" in t
    kf = line("kfunc:udp_send_skb", "--arg", "skb=struct sk_buff *", "--max", "args.skb->len")
    text = generate_c(kf).text
    assert 'SEC("fentry/udp_send_skb")' in text and "BPF_CORE_READ(arg_skb, len)" in text
    xf = line("kretfunc:udp_send_skb", "--hist", "retval")
    assert "bpf_get_func_ret(ctx, &ret);" in generate_c(xf).text


def test_hostile_strings_cannot_reach_the_c_text() -> None:
    spec = line(
        "tracepoint:net:net_dev_queue", "--comm", 'x"*/ evil; /*', "--filter",
        'comm != "*/ evil"', "--count-by", "comm",
    )
    text = generate_c(spec, tracepoint_format=NET_DEV_QUEUE).text
    # the literals became character constants; comments cannot be closed by spec text
    assert "comm[0] == 120 && comm[1] == 34" in text
    body = text[text.index("#include"):]
    assert body.count("/*") == body.count("*/")


def test_the_floor_is_an_empty_program_on_the_same_attach_point() -> None:
    from harness.spec.codegen_c import generate_floor_c

    expected = {
        "tracepoint": ('SEC("tp/net/net_dev_queue")', "int twin_floor(struct twin_floor_ctx *ctx)"),
        "kprobe": ('SEC("kprobe/udp_send_skb.isra.0")', "int BPF_KPROBE(twin_floor)"),
        "kfunc": ('SEC("fentry/udp_send_skb.isra.0")', "int BPF_PROG(twin_floor)"),
    }
    for attach, spec in catalog.get("ktrace").equivalents.items():
        symbol = None if attach == "tracepoint" else "udp_send_skb.isra.0"
        floor = generate_floor_c(spec, symbol=symbol)
        section, signature = expected[attach]
        assert section in floor.text and signature in floor.text, attach
        body = floor.text[floor.text.index(signature):]
        assert body.split("\n")[1:4] == ["{", "\treturn 0;", "}"]  # nothing but return
        assert floor.maps == () and floor.settings == ()  # no map, no pid to fill in
        assert "bpf_" not in body


@pytest.mark.parametrize(
    ("probe", "argv", "message"),
    [
        ("kprobe:udp_*", ("--count-by", "kstack"), "wildcard probe"),
        ("kprobe:f", ("--count-by", "func"), "the builtin 'func'"),
        ("tracepoint:net:net_dev_queue", ("--count-by", "args.name"), "args.name"),
        ("kprobe:f", ("--count-by", "comm + 1"), "comm inside an expression"),
        ("kprobe:f", ("--lhist", "arg0:0:10:3"), "lhist 0:10:3"),
    ],
)
def test_outside_the_subset_is_one_line_naming_the_construct(
    probe: str, argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as info:
        generate_c(line(probe, *argv), tracepoint_format=NET_DEV_QUEUE)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, NoTwin) or "args.name" in message


@pytest.mark.usefixtures("needs_bpf")
def test_generated_twin_compiles_warning_free() -> None:
    from harness.twin.build import build_twin

    spec, *_ = resolve_spec("ktrace", None, "tracepoint")
    built = build_twin(twin_program(spec).text)
    assert built.warnings == "" and built.bpf_obj.stat().st_size > 0
    # the cached build directory holds the shared header beside the source it compiled
    assert (built.source.parent / "twin.bpf.h").read_text() == (
        resources.files("harness.twin").joinpath("twin.bpf.h").read_text()
    )
    hostile = line(
        "tracepoint:net:net_dev_queue", "--comm", 'x"*/ evil; /*', "--filter",
        'comm != "*/ evil" && args.len > 3', "--count-by", "comm", "--stats", "args.len",
    )
    assert build_twin(twin_program(hostile).text).warnings == ""


@pytest.mark.usefixtures("needs_bpf")
def test_done_criterion_crosscheck_passes_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "crosscheck", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
        "--hist", "args.__syscall_nr", "--count", "300", "--out", str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert [m["map"] for m in verdict["maps"]] == ["@count", "@hist"]
    # beside each other: the bpftrace program and the generated C it was checked against
    assert "sys_enter_getppid" in (tmp_path / "program.bt").read_text()
    assert 'SEC("tp/syscalls/sys_enter_getppid")' in (tmp_path / "twin.bpf.c").read_text()


@pytest.mark.usefixtures("needs_bpf")
def test_generated_ktrace_twin_equals_the_hand_written_one() -> None:
    """The hand-written ktrace.bpf.c stays as an example; both twins agree on the same sends."""
    from twin_example import EXAMPLE, example

    from harness.host.workload import GatedWorkload
    from harness.paths import workload
    from harness.twin.build import build

    x = run_crosscheck("ktrace", attach="tracepoint", count=40)
    assert x.passed
    # the hand-written twin, alone, on an identical workload
    import sys

    work = GatedWorkload([sys.executable, str(workload("udp_send.py")), "--no-wait",
                          "--count", "40", "--sizes", "1,100,1000,1400", "--sockets", "3"])
    try:
        proc = example.start(build(EXAMPLE).loader, "tracepoint", work.pid)
        proc.wait_attached()
        work.go()
        assert work.wait(60) == 0
        dumps, _ = proc.stop()
    finally:
        work.close()
    hand = example.frames(dumps)
    gen = x.libbpf_frames
    assert sorted(hand["@len"]["count"]) == sorted(gen["@len"]["count"])
    assert hand["@hash"]["value"].sum() == gen["@hash"]["value"].sum() == 40
    assert sorted(map(tuple, hand["@stacks"]["kstack"])) == sorted(
        map(tuple, gen["@stacks"]["kstack"])
    )


def _held_ids(pid: int) -> set[tuple[str, int]]:
    """("prog"|"link", id) of every BPF object a process holds, from its fdinfo."""
    held = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        for row in info.read_text().splitlines():
            key, _, value = row.partition(":")
            if key in ("prog_id", "link_id"):
                held.add((key[:-3], int(value)))
    return held


def _alive(kind: str, ident: int) -> bool:
    done = subprocess.run(["bpftool", kind, "show", "id", str(ident)], capture_output=True,
                          check=False)
    return done.returncode == 0


@pytest.mark.usefixtures("needs_bpf")
def test_loader_detaches_and_exits_when_its_control_pipe_closes() -> None:
    from harness.twin.build import build_twin, generic_loader
    from harness.twin.generic import TwinLoader

    spec, *_ = resolve_spec("syscalls", None, "tracepoint")
    built = build_twin(twin_program(spec).text)
    lb = TwinLoader(generic_loader(), built.bpf_obj, {"target_pid": 1})
    lb.wait_attached()
    held = _held_ids(lb.proc.pid)
    assert {kind for kind, _ in held} == {"prog", "link"}
    assert all(_alive(kind, ident) for kind, ident in held)
    assert lb.proc.stdin is not None
    lb.proc.stdin.close()  # what the kernel does when the harness dies
    deadline = time.monotonic() + 5
    while lb.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lb.proc.returncode is not None and lb.proc.returncode != 0
    assert not any(_alive(kind, ident) for kind, ident in held)


@pytest.mark.usefixtures("needs_bpf")
def test_bench_of_a_probe_line_measures_both_generated_programs(tmp_path: Path) -> None:
    import csv

    argv = [
        "bench", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "kstack",
        "--label", "getppid-kstack", "--rounds", "1", "--max-rounds", "1", "--warmup", "0",
        "--events", "3000",
        "--out", str(tmp_path), "--no-report", "-q",
    ]
    assert main(argv) == 0
    with (tmp_path / "getppid-kstack.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["mode"] for r in table] == [
        "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
    ]
    assert table[2]["events_counted"] == table[3]["events_counted"] == "3000"
    assert table[5]["events_counted"] == table[6]["events_counted"] == "3000"
    measured = programs_measured(tmp_path, table)
    assert "@count[kstack] = count();" in measured["bpftrace"]
    assert "bpf_get_stackid" in measured["libbpf"]
