"""Stack keys and values in every shape bpftrace prints them, read from literal output (the live
runs of each shape are in tests/test_stack_shapes_live.py): tuple keys with an empty user or
kernel part keep both columns, columns are named ustack/kstack from the program or the frames,
and the folded stacks put the other key parts first, then user frames, then kernel frames
marked `_[k]`."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.output.frames import to_frames
from harness.output.model import Stack
from harness.output.parse import parse_json, parse_text, split_key
from harness.output.stacks import (
    KERNEL_BASE,
    program_key_names,
    stack_kind,
    stack_kinds_in_program,
)
from harness.report import flamegraph
from harness.report.rundir import write_run_dir
from harness.report.summary import write_report

USER = ["getppid+7", "demo::run_for(double)+184", "main+22", "__libc_start_call_main+122"]
KERNEL = ["__task_pid_nr_ns+54", "__x64_sys_getppid+38", "do_syscall_64+113",
          "entry_SYSCALL_64_after_hwframe+118"]


def frames(stack: list[str], indent: str = "    ") -> str:
    return "".join(f"{indent}{f}\n" for f in stack)


# `@[ustack, kstack] = count()` as bpftrace 0.17 prints it (profile:hz on a C++ workload):
# both parts, no kernel part (user mode), no user part (a kernel thread), neither.
TUPLE_TEXT = (
    "Attaching 1 probe...\n\n\n"
    f"@[\n{frames(USER)}, \n{frames(KERNEL)}]: 3\n"
    f"@[\n{frames(USER)}, ]: 40\n"
    f"@[, \n{frames(KERNEL)}]: 5\n"
    "@[, ]: 2\n"
    "@n: 50\n"
)


def test_split_key_keeps_empty_stack_parts() -> None:
    s, k = "\n" + frames(USER), "\n" + frames(KERNEL)
    assert split_key(s + ", " + k, ", ") == (tuple(USER), tuple(KERNEL))
    assert split_key(s + ", ", ", ") == (tuple(USER), "")
    assert split_key(", " + k, ", ") == ("", tuple(KERNEL))
    assert split_key(", ", ", ") == ("", "")
    assert split_key("spin, 8474, " + s, ", ") == ("spin", 8474, tuple(USER))
    assert split_key(s + ", , " + k, ", ") == (tuple(USER), "", tuple(KERNEL))
    # json's separator is "," (bpftrace -f json keys: "\n    f+1\n," and ",\n    k+1\n")
    assert split_key(s + ",", ",") == (tuple(USER), "")
    assert split_key("," + k, ",") == ("", tuple(KERNEL))


def test_tuple_of_user_and_kernel_stack_is_two_columns_whatever_is_empty() -> None:
    out = parse_text(TUPLE_TEXT)
    f = to_frames(out)["@"]
    # named by the frames: a syscall entry roots the kernel stack, __libc_start_* the user one
    assert list(f.columns) == ["ustack", "kstack", "value"]
    rows = [(tuple(u), tuple(k), int(v)) for u, k, v in f.itertuples(index=False)]
    assert rows == [(tuple(USER), tuple(KERNEL), 3), (tuple(USER), (), 40),
                    ((), tuple(KERNEL), 5), ((), (), 2)]
    assert f["value"].sum() == to_frames(out)["@n"]["value"][0]
    # the spec's (or the program's) names win over the frames
    named = to_frames(out, {"@": ["u", "k"]})["@"]
    assert list(named.columns) == ["u", "k", "value"] and named["k"].iloc[1] == ()


def test_folded_is_root_first_user_then_kernel_marked(tmp_path: Path) -> None:
    out = parse_text(TUPLE_TEXT)
    run = write_run_dir(tmp_path / "run", to_frames(out), {"program": None})
    write_report(run)
    csv = (run / "at.csv").read_text().splitlines()
    assert csv[0] == "ustack,kstack,value"
    assert csv[1] == ";".join(reversed(USER)) + "," + ";".join(reversed(KERNEL)) + ",3"
    assert csv[2] == ";".join(reversed(USER)) + ",,40"
    folded = flamegraph.parse_folded((run / "at.folded").read_text().splitlines())
    user, kernel = tuple(reversed(USER)), tuple(f + "_[k]" for f in reversed(KERNEL))
    assert folded == {user + kernel: 3, user: 40, kernel: 5, ("[empty stack]",): 2}
    assert sum(folded.values()) == 50  # @n
    page = (run / "at.flame.html").read_text()
    assert "50 samples" in page and "entry_SYSCALL_64_after_hwframe+118_[k]" in page


def test_other_key_parts_are_the_root_frames_as_in_the_profile_entry(tmp_path: Path) -> None:
    text = ("Attaching 1 probe...\n"
            f"@cu[spin, 8474, \n{frames(USER)}]: 7\n"
            "@cu[spin, 8475, ]: 2\n"
            f"@ck[spin, \n{frames(KERNEL)}]: 4\n")
    f = to_frames(parse_text(text))
    assert list(f["@cu"].columns) == ["key0", "key1", "ustack", "value"]
    assert f["@cu"]["ustack"].tolist() == [tuple(USER), ()]
    assert list(f["@ck"].columns) == ["key0", "kstack", "value"]
    run = write_run_dir(tmp_path / "run", f, {})
    write_report(run)
    cu = flamegraph.parse_folded((run / "cu.folded").read_text().splitlines())
    assert cu == {("spin", "8474", *reversed(USER)): 7, ("spin", "8475", "[empty stack]"): 2}
    ck = flamegraph.parse_folded((run / "ck.folded").read_text().splitlines())
    assert ck == {("spin", *(f + "_[k]" for f in reversed(KERNEL))): 4}


# Frames the earlier frame pattern refused: C++ (namespaces, templates, lambdas, operator()),
# Rust, Go, perf mode's address column and module, [unknown].
ODD_USER = [
    "std::_Function_handler<void (int), demo::run_for(double)::{lambda(int)#1}>"
    "::_M_invoke(std::_Any_data const&, int&&)+1",
    "demo::Acc<double>::operator()(double)+9",
    "<alloc::vec::Vec<T> as core::ops::Drop>::drop+30",
    "main.(*Server).Serve+120",
    "[unknown]",
    "0x7f5fc2a68b68",
    "__libc_start_call_main+122",
]
PERF_KERNEL = ["ffffffff81d7da46 read_zero+38", "ffffffff81000130 entry_SYSCALL_64+118"]
PERF_USER = ["7f5fc26ed439 __clock_gettime+25 (/usr/lib/x86_64-linux-gnu/libc.so.6)",
             "7f5fc2a68b68 0x7f5fc2a68b68 ([unknown])",
             "55a5009232b1 main+22 (/tmp/shapes/spin)"]


@pytest.mark.parametrize(("stack", "kind", "indent"), [
    (ODD_USER, "ustack", "    "), (PERF_KERNEL, "kstack", "\t"), (PERF_USER, "ustack", "\t")])
def test_any_symbol_makes_a_stack_map(stack: list[str], kind: str, indent: str,
                                      tmp_path: Path) -> None:
    text = (f"Attaching 1 probe...\n@s[\n{frames(stack, indent)}]: 9\n"
            f"@s[\n{frames(stack[1:], indent)}]: 1\n")
    f = to_frames(parse_text(text))
    assert list(f["@s"].columns) == [kind, "value"]
    run = write_run_dir(tmp_path / "run", f, {})
    write_report(run)
    folded = flamegraph.parse_folded((run / "s.folded").read_text().splitlines())
    mark = "_[k]" if kind == "kstack" else ""
    assert folded[tuple(fr + mark for fr in reversed(stack))] == 9
    assert sum(folded.values()) == 10


def test_kind_by_addresses_and_roots() -> None:
    kernel_raw = (f"0x{KERNEL_BASE + 0x1000:x}",)
    assert stack_kind([kernel_raw]) == "kstack"
    assert stack_kind([(f"0x{KERNEL_BASE - 1:x}",)]) == "ustack"
    # a user stack walked without frame pointers ends in garbage: any user address says user
    assert stack_kind([("ppoll+166", "0xf86ecc60000001f3", "0x7f00")]) == "ustack"
    assert stack_kind([tuple(KERNEL)]) == "kstack" and stack_kind([tuple(USER)]) == "ustack"
    assert stack_kind([("f+1", "g+2")]) is None  # nothing tells
    assert stack_kind([tuple(KERNEL), tuple(USER)]) is None  # split votes
    assert stack_kind([tuple(KERNEL)] * 10 + [("0xffffffffdeadbeef",)]) == "kstack"


def test_program_names_each_part() -> None:
    program = ("profile:hz:99 /pid == 3/ { @[ustack, kstack] = count(); "
               "@k[kstack(perf)] = count(); @cu[comm, pid, ustack(perf, 5)] = count(); "
               "@s[tid] = kstack; @x[\"a,b]\", (1, 2)] = count(); "
               "if (@s[tid]) { delete(@s[tid]); } }")
    assert stack_kinds_in_program(program) == {
        "@": (["ustack", "kstack"], None), "@k": (["kstack"], None),
        "@cu": ([None, None, "ustack"], None), "@s": ([None], "kstack"),
        "@x": ([None, None], None)}
    # stacks with nothing to tell them apart (no addresses, no entry frames): named by the text
    text = "Attaching 1 probe...\n@[\n    f+1\n, \n    g+2\n]: 1\n"
    out = parse_text(text)
    assert list(to_frames(out)["@"].columns) == ["key0", "key1", "value"]
    names = program_key_names("profile:hz:9 { @[kstack, ustack] = count(); }", out)
    assert names == {"@": ["kstack", "ustack"]}
    assert list(to_frames(out, names)["@"].columns) == ["kstack", "ustack", "value"]
    # a program whose key has another arity than the printed one names nothing
    assert program_key_names("profile:hz:9 { @[kstack] = count(); }", out) == {}


def test_stack_values_glued_when_empty_and_their_flame_graph(tmp_path: Path) -> None:
    # bpftrace prints an empty stack value as nothing and no newline: entries run together
    text = ("Attaching 2 probes...\n\n\n"
            "@s[0]: @s[15]: @s[673]: \n        0x7f08a46c384f\n        0x7f08a468ffd6\n"
            f"@s[716]: \n{frames(KERNEL, '        ')}"
            "@s[22991]: @s[28094]: \n\n")
    out = parse_text(text)
    assert any("3 entries of @s printed on one line" in w for w in out.warnings)
    f = to_frames(out)["@s"]
    assert f["key0"].tolist() == [0, 15, 673, 716, 22991, 28094]
    assert f["value"].tolist() == [(), (), ("0x7f08a46c384f", "0x7f08a468ffd6"), tuple(KERNEL),
                                   (), ()]
    assert all(isinstance(v, Stack) for v in f["value"])
    program = "tracepoint:sched:sched_switch { @s[tid] = kstack; }"
    run = write_run_dir(tmp_path / "run", {"@s": f}, {"program": program})
    write_report(run)
    folded = flamegraph.parse_folded((run / "s.folded").read_text().splitlines())
    # one entry each; the program says the value is a kernel stack
    assert folded[("716", *(fr + "_[k]" for fr in reversed(KERNEL)))] == 1
    assert folded[("0", "[empty stack]")] == 1 and sum(folded.values()) == 6
    assert "6 entries" in (run / "s.flame.html").read_text()


def test_json_tuple_stack_keys_match_text() -> None:
    import json

    records = [{"type": "attached_probes", "data": {"probes": 1}},
               {"type": "map", "data": {"@": {
                   "\n" + frames(USER) + ",\n" + frames(KERNEL): 3,
                   "\n" + frames(USER) + ",": 40,
                   ",\n" + frames(KERNEL): 5,
                   ",": 2}}},
               {"type": "map", "data": {"@n": 50}}]
    js = to_frames(parse_json("\n".join(json.dumps(r) for r in records) + "\n"))
    text = to_frames(parse_text(TUPLE_TEXT))
    assert js["@"].to_dict("records") == text["@"].to_dict("records")


def test_newer_releases_print_an_empty_part_between_lone_joints() -> None:
    """bpftrace 0.24+ (0.27 here) puts the joint of `@[ustack, kstack]` on a line of its own,
    also when a part is empty: `@[`, `, `, frames, `]: 5` and frames, `, `, `]: 40`."""
    text = ("Attaching 1 probe...\n\n\n"
            f"@[\n{frames(USER, '        ')}, \n{frames(KERNEL, '        ')}]: 3\n"
            f"@[\n{frames(USER, '        ')}, \n]: 40\n"
            f"@[\n, \n{frames(KERNEL, '        ')}]: 5\n"
            "@[\n, \n]: 2\n"
            "@n: 50\n"
            "@x[1]: 5\n, \n")  # an entry, then printf text that is a lone joint: no stack
    out = parse_text(text)
    assert to_frames(out)["@"].to_dict("records") == to_frames(parse_text(TUPLE_TEXT))[
        "@"].to_dict("records")
    assert out.lines == [", "] and [m.name for m in out.maps] == ["@", "@n", "@x"]
