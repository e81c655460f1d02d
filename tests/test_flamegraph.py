"""The flame graph page and the differential diff, checked on literal stacks (no browser here;
test_flame_browser.py opens the same pages in Chromium)."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.report import flamediff, flamegraph
from harness.report.summary import flame_title, probe_of

A = ("entry_SYSCALL_64+118", "do_syscall_64+113", "__x64_sys_sendto+32", "udp_sendmsg+2534")
COUNTS = Counter(
    {
        (*A, "udp_send_skb+423", "ip_output+95"): 50,
        (*A, "udp_send_skb+423", "neigh_resolve_output+300"): 7,
        (*A, "ip_make_skb+80"): 3,
        ("entry_SYSCALL_64+118", "do_syscall_64+113", "__x64_sys_getppid+5"): 2,
    }
)


def page_data(page: str) -> dict[str, object]:
    blob = re.search(r'<script id="flame-data" type="application/json">(.*?)</script>', page, re.S)
    assert blob is not None
    data: dict[str, object] = json.loads(blob.group(1))
    return data


def prefixes(counts: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """Inclusive count of every path, computed here the plain way."""
    out: Counter[tuple[str, ...]] = Counter()
    for stack, n in counts.items():
        for d in range(len(stack) + 1):
            out[stack[:d]] += n
    return out


def test_page_tree_holds_every_path_with_its_inclusive_count() -> None:
    data = page_data(flamegraph.flame_page(COUNTS, "@stacks · probe · 62 samples"))
    names, n, p, v = data["names"], data["n"], data["p"], data["v"]
    assert isinstance(names, list) and isinstance(n, list)
    assert isinstance(p, list) and isinstance(v, list)
    paths: list[tuple[str, ...]] = []
    for i in range(len(n)):
        assert p[i] < i  # parents come first: the page lays out in one pass
        paths.append(() if i == 0 else (*paths[p[i]], names[n[i]]))
    assert dict(zip(paths, v, strict=True)) == dict(prefixes(COUNTS))
    assert names[n[0]] == "all" and v[0] == 62
    assert len(names) == len(set(names))  # interned


def test_page_is_self_contained_and_escapes_names() -> None:
    evil = Counter({("main", "</script><img src=x onerror=alert(1)>"): 1})
    page = flamegraph.flame_page(evil, "<b>@x</b>")
    assert "</script><img" not in page and "<b>@x" not in page
    assert page_data(page)["names"] == ["all", "main", "</script><img src=x onerror=alert(1)>"]
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # nothing fetched: works from file://
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)


def kernelish_stacks(n_stacks: int, seed: int = 7) -> Counter[tuple[str, ...]]:
    """`n_stacks` distinct stacks 8-30 frames deep over ~600 kernel-length symbol names."""
    rng = random.Random(seed)
    words = ["tcp", "udp", "skb", "sock", "sendmsg", "queue", "xmit", "ip", "netif", "rcv",
             "ext4", "vfs", "write", "page", "fault", "alloc", "folio", "sched", "wake", "lock"]
    symbols = [
        "_".join(rng.choice(words) for _ in range(rng.randint(2, 4))) + f"+{rng.randint(1, 4000)}"
        for _ in range(600)
    ]
    roots = ["entry_SYSCALL_64_after_hwframe+118", "ret_from_fork_asm+26", "asm_exc_page_fault+34"]
    counts: Counter[tuple[str, ...]] = Counter()
    while len(counts) < n_stacks:
        trunk = [rng.choice(roots), "do_syscall_64+113"]
        counts[(*trunk, *rng.sample(symbols, rng.randint(6, 28)))] += rng.randint(1, 500)
    return counts


def test_a_few_hundred_stacks_stay_under_150_kb(tmp_path: Path) -> None:
    counts = kernelish_stacks(400)
    path = flamegraph.write_flame_html(counts, tmp_path / "big.flame.html", "@stacks")
    size = path.stat().st_size
    assert size <= 150_000, size
    data = page_data(path.read_text())
    assert len(data["v"]) == len(prefixes(counts))  # type: ignore[arg-type]


def test_title_names_map_probe_and_total() -> None:
    meta = {
        "program": 'BEGIN { printf("X\\n"); }\n'
        "kprobe:udp_send_skb /pid == 7/\n{ @s[kstack] = count(); }\n"
    }
    assert probe_of(meta) == "kprobe:udp_send_skb"
    assert flame_title("stacks", meta, 62) == "@stacks · kprobe:udp_send_skb · 62 samples"
    assert flame_title("at", {}, 3) == "@ · 3 samples"
    two = {
        "program": "tracepoint:a:b,\ntracepoint:c:d { @[kstack] = count(); }\n"
        "interval:s:1 { exit(); }"
    }
    assert probe_of(two) == "tracepoint:a:b, tracepoint:c:d"


def test_strip_offsets_merges_what_only_offsets_split() -> None:
    merged = flamediff.strip_offsets(
        Counter({("a+1", "b+0x1f"): 2, ("a+9", "b+3"): 5, ("x+2 (mod)", "y"): 1})
    )
    assert merged == Counter({("a", "b"): 7, ("x (mod)", "y"): 1})


def write_run(path: Path, stacks: dict[str, int], extra: dict[str, int] | None = None) -> Path:
    """A run with a stack map of no known kind (`stack`: no `_[k]` marks in its folded lines)."""
    path.mkdir(parents=True)
    pd.DataFrame({"stack": list(stacks), "value": list(stacks.values())}).to_csv(
        path / "stacks.csv", index=False
    )
    if extra is not None:
        pd.DataFrame({"stack": list(extra), "value": list(extra.values())}).to_csv(
            path / "other.csv", index=False
        )
    (path / "run.json").write_text(json.dumps({"program": "kprobe:udp_send_skb { }"}))
    return path


def test_diff_csv_lists_every_stack_of_both_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"s+1;t+2;u+3": 10, "s+1;t+2;v+4": 5, "s+1;gone+1": 4})
    b = write_run(tmp_path / "b", {"s+9;t+8;u+7": 4, "s+9;t+8;v+6": 20, "s+9;new+1": 1})
    diff = flamediff.write_diff(a, b, tmp_path / "out")
    assert sorted(p.name for p in diff.files) == [
        "stacks.diff.csv",
        "stacks.diff.folded",
        "stacks.diff.html",
    ]
    with (tmp_path / "out" / "stacks.diff.csv").open() as f:
        rows = {r["stack"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"s;t;u", "s;t;v", "s;gone", "s;new"}
    assert (rows["s;t;v"]["count_a"], rows["s;t;v"]["count_b"], rows["s;t;v"]["delta"]) == (
        "5",
        "20",
        "15",
    )
    assert rows["s;t;v"]["ratio"] == "4.0000" and rows["s;new"]["ratio"] == ""
    assert rows["s;t;u"]["share_a_pct"] == f"{100 * 10 / 19:.3f}"
    assert (tmp_path / "out" / "stacks.diff.folded").read_text().splitlines() == [
        "s;gone 4 0",
        "s;new 0 1",
        "s;t;u 10 4",
        "s;t;v 5 20",
    ]
    data = page_data((tmp_path / "out" / "stacks.diff.html").read_text())
    names, n, v, base = data["names"], data["n"], data["v"], data["b"]
    by_name = {names[n[i]]: (v[i], base[i]) for i in range(len(n))}  # type: ignore[index,arg-type]
    assert by_name["v"] == (20, 5) and by_name["u"] == (4, 10) and by_name["new"] == (1, 0)
    assert by_name["gone"] == (0, 4)  # no width in B, but its baseline is there for the page
    assert "1 stacks only in A (4 samples)" in str(data["subtitle"])  # ... and the CSV lists it
    assert "1 stacks only in A (4 samples)" in str(data["subtitle"])


def test_the_library_diffs_and_reports_as_the_commands_do(tmp_path: Path) -> None:
    """harness.diff and harness.write_report are what `harness diff` and `harness report` call:
    the same files, and the same one-line refusals before anything is written."""
    a = write_run(tmp_path / "a", {"s+1;t+2": 3, "s+1;u+1": 1})
    b = write_run(tmp_path / "b", {"s+9;t+8": 1, "s+9;u+7": 4})
    diff = harness.diff(a, b, out=tmp_path / "out")
    assert {(r.stack, r.count_a, r.count_b) for r in diff.rows} == {(("s", "t"), 3, 1),
                                                                     (("s", "u"), 1, 4)}
    assert sorted(p.name for p in diff.files) == [
        "stacks.diff.csv", "stacks.diff.folded", "stacks.diff.html",
    ]
    for bad, said in (({"map_name": " "}, "--map names no map"),
                      ({"keep_offsets": "yes"}, "keep_offsets='yes'")):
        with pytest.raises(harness.HarnessError, match=said):
            harness.diff(a, b, out=tmp_path / "never", **bad)
    assert not (tmp_path / "never").exists()
    with pytest.raises(harness.HarnessError, match="is not a run directory"):
        harness.write_report(tmp_path / "out")  # the diff's folder: only read, never rewritten
    written = harness.write_report(tmp_path / "out", out=tmp_path / "report")
    assert tmp_path / "report" / "summary.md" in written
    assert any(p.name.endswith(".html") for p in harness.write_report(a))


def test_diff_keeps_offsets_when_asked(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"s+1;t+2": 10})
    b = write_run(tmp_path / "b", {"s+1;t+2": 10, "s+1;t+3": 10})
    diff = flamediff.write_diff(a, b, tmp_path / "o", keep_offsets=True)
    assert {";".join(r.stack): r.delta for r in diff.rows} == {"s+1;t+2": 0, "s+1;t+3": 10}
    data = page_data((tmp_path / "o" / "stacks.diff.html").read_text())
    assert data["b"][0] == 10 and data["v"][0] == 20  # type: ignore[index]  # raw: the page scales
    assert data["merge"] is False  # the page opens with the offsets the diff was asked to keep


def test_diff_needs_one_stack_map_or_map(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"s+1;t+2": 1}, extra={"s+1;x+2": 1})
    with pytest.raises(flamediff.DiffError, match="several stack maps"):
        flamediff.load_stacks(a)
    assert flamediff.load_stacks(a, "@other").map_name == "@other"
    (tmp_path / "empty").mkdir()
    with pytest.raises(flamediff.DiffError, match="no stack map"):
        flamediff.load_stacks(tmp_path / "empty")


def test_diff_reads_a_crosscheck_bpftrace_part_and_cli(tmp_path: Path) -> None:
    write_run(tmp_path / "a" / "libbpf", {"s+1;t+2": 99})
    write_run(tmp_path / "a" / "bpftrace", {"s+1;t+2": 3})
    b = write_run(tmp_path / "b", {"s+1;t+2": 5})
    assert flamediff.load_stacks(tmp_path / "a").source.parent.name == "bpftrace"
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "diff", str(tmp_path / "a"), str(b),
         "--out", str(tmp_path / "d")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "+2  (3 -> 5)  s;t" in out
    assert (tmp_path / "d" / "stacks.diff.html").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "harness.cli", "diff", str(tmp_path / "nope"), str(b)],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no run directory or file" in bad.stderr


@pytest.mark.usefixtures("needs_bpf")
def test_diff_totals_are_what_bpftrace_printed_and_a_loss_is_said(tmp_path: Path) -> None:
    """Two real runs: each side of the diff adds up to the total bpftrace printed for the map
    (run.json's `printed`, read from bpftrace's own output), and the workload's own count; a
    row lost from A's CSV is a warning naming A and both totals, on stderr and on the page."""
    import harness

    loop = [sys.executable, "-m", "harness.workloads.syscall_loop", "--count"]
    runs = []
    for name, n in (("a", 30), ("b", 50)):
        t = harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="kstack",
                          workload=[*loop, str(n)], workload_pid=True, out=tmp_path / name)
        assert int(t.frames["@count"]["value"].sum()) == n
        runs.append(tmp_path / name)
    diff = flamediff.write_diff(runs[0], runs[1], tmp_path / "d")
    assert (diff.a.total, diff.b.total) == (30, 50) and diff.differences == []
    assert (diff.a.printed_total(), diff.b.printed_total()) == (30, 50)
    csv_a = runs[0] / "count.csv"
    frame = pd.read_csv(csv_a)
    assert len(frame) == 1  # one stack: getppid's
    frame.loc[0, "value"] -= 1  # a sample lost between bpftrace's print and the CSV
    frame.to_csv(csv_a, index=False)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "diff", str(runs[0]), str(runs[1]), "--out",
         str(tmp_path / "d2")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "@count: the diff holds 29 of the 30 bpftrace printed (printing 1)" in done.stderr
    assert "warning: A (" in done.stderr and "warning: B" not in done.stderr
    page = page_data((tmp_path / "d2" / "count.diff.html").read_text())
    assert "NOT ALL PRINTED SAMPLES" in str(page["subtitle"])
