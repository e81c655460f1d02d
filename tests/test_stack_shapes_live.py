"""Every stack shape from a real run on this machine, each total checked against an independent
reading of the same run: a second `@n = count()` in the same probe (the stack map's total, its
folded stacks and its flame page each equal it), or the workload's own count of its calls.

The workload is a small C++ program (built here with g++, frame pointers kept) whose hot path
goes through a namespace, a class template, a lambda held by std::function and an operator(),
and which reads /dev/zero and calls getppid() so its samples and tracepoints have kernel stacks.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import harness
from harness.report import flamegraph

CXX_SPIN = r"""
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <functional>
#include <unistd.h>

namespace demo {
static long getppids = 0;
static char buf[1 << 16];

template <typename T> struct Acc {
  T v{};
  __attribute__((noinline)) void operator()(T x) { v += x * 1.0000001; }
};

__attribute__((noinline)) void syscalls(int fd) {
  if (read(fd, buf, sizeof buf) < 0) std::abort();
  getppid();
  ++getppids;
}

__attribute__((noinline)) double run_for(double secs) {
  Acc<double> acc;
  int fd = open("/dev/zero", O_RDONLY);
  std::function<void(int)> step = [&](int i) {
    acc(i);
    if (i % 256 == 0) syscalls(fd);
  };
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    step(i);
    if (i % 1024 == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= secs)
      break;
  }
  close(fd);
  return acc.v;
}
}  // namespace demo

int main(int argc, char **argv) {
  double v = demo::run_for(argc > 1 ? atof(argv[1]) : 1.0);
  printf("getppid %ld (%g)\n", demo::getppids, v);
  return 0;
}
"""


@pytest.fixture(scope="module")
def cxx_spin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C++ workload, built with g++ (-O0 keeps the template, lambda and operator() frames)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed (apt-get install g++)")
    where = tmp_path_factory.mktemp("cxx")
    (where / "cxx_spin.cpp").write_text(CXX_SPIN)
    subprocess.run(["g++", "-O0", "-g", "-fno-omit-frame-pointer", "-o", str(where / "cxx_spin"),
                    str(where / "cxx_spin.cpp")], check=True, capture_output=True, timeout=120)
    return where / "cxx_spin"


def page_data(page: Path) -> dict[str, object]:
    blob = re.search(r'<script id="flame-data" type="application/json">(.*?)</script>',
                     page.read_text(), re.S)
    assert blob is not None
    data: dict[str, object] = json.loads(blob.group(1))
    return data


def folded(path: Path) -> Counter[tuple[str, ...]]:
    return flamegraph.parse_folded(path.read_text().splitlines())


def check_totals(t: harness.Trace, name: str, stem: str, n: int) -> Counter[tuple[str, ...]]:
    """The map's frame total, its .folded total and its page's total all equal `n`."""
    assert t.path is not None
    frame = t.frames[name]
    assert int(frame["value"].sum()) == n, (name, int(frame["value"].sum()), n)
    counts = folded(t.path / f"{stem}.folded")
    assert sum(counts.values()) == n, (name, sum(counts.values()), n)
    data = page_data(t.path / f"{stem}.flame.html")
    assert data["v"][0] == n  # type: ignore[index]  # the root: every stack's count
    return counts


def user_frames_first(stack: tuple[str, ...]) -> bool:
    """Root first: no user frame after a kernel frame."""
    kernel = [f.endswith("_[k]") for f in stack]
    return kernel == sorted(kernel)


SYSCALLS = "_ZN4demo8syscallsEi"  # demo::syscalls(int): once per 256 turns of the hot loop


def alive_program(binary: Path) -> str:
    """While the workload runs: a uprobe's user stack (its kernel stack is empty), a system
    call's both stacks, a kernel thread's kernel stack (its user stack is empty), all in one
    `@[ustack, kstack]` map, and `@n` counting every event; the program exits while the
    workload still runs, so bpftrace names its user frames."""
    return f"""uprobe:{binary}:{SYSCALLS}
{{
  @[ustack, kstack] = count(); @n = count();
  @cu[comm, pid, ustack] = count(); @nu = count();
}}
tracepoint:syscalls:sys_enter_getppid /comm == "cxx_spin"/
{{
  @[ustack, kstack] = count(); @n = count();
  @ck[comm, kstack] = count(); @nk = count();
}}
tracepoint:workqueue:workqueue_execute_start {{ @[ustack, kstack] = count(); @n = count(); }}
interval:s:2 {{ exit(); }}
"""


@pytest.mark.usefixtures("needs_bpf")
def test_tuple_stacks_either_part_empty_cxx_names_and_prefix_keys(
        cxx_spin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # bpftrace 0.17 names each user stack's frames anew unless told to cache them (the
    # workload's map does not change while it runs)
    monkeypatch.setenv("BPFTRACE_CACHE_USER_SYMBOLS", "1")
    t = harness.trace(alive_program(cxx_spin), workload=[str(cxx_spin), "60"],
                      out=tmp_path / "run")
    assert t.meta.ended_by == "program-exit" and t.path is not None
    n, nu, nk = (int(t.frames[m]["value"][0]) for m in ("@n", "@nu", "@nk"))
    assert nu > 100 and nk > 100 and n > nu + nk  # and the kernel threads' work items
    at = t.frames["@"]
    assert list(at.columns) == ["ustack", "kstack", "value"]  # named by the program's text
    has_user, has_kernel = at["ustack"].map(len) > 0, at["kstack"].map(len) > 0
    assert int(at[has_user & ~has_kernel]["value"].sum()) == nu  # the uprobe: no kernel stack
    assert int(at[has_user & has_kernel]["value"].sum()) == nk  # getppid: both
    assert int(at[~has_user & has_kernel]["value"].sum()) == n - nu - nk  # kernel threads
    frames = {f for u in at["ustack"] for f in u}
    # C++ names: a namespace, the lambda behind std::function, templates, operator()
    for name in ("demo::syscalls(int)+", "demo::run_for(double)+",
                 "demo::run_for(double)::{lambda(int)#1}::operator()(int) const+",
                 "std::function<void (int)>::operator()(int) const+"):
        assert any(f.startswith(name) for f in frames), name
    counts = check_totals(t, "@", "at", n)
    assert all(user_frames_first(s) for s in counts)
    syscall = [s for s in counts
               if s[0] == "__libc_start_call_main+122" and s[-1].endswith("_[k]")]
    assert sum(counts[s] for s in syscall) == nk and all(
        f.startswith("demo::syscalls(int)+") for s in syscall for f in s if "syscalls" in f)
    assert sum(c for s, c in counts.items() if not s[-1].endswith("_[k]")) == nu
    # the CSV: a column per stack, each root first
    with (t.path / "at.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["ustack", "kstack", "value"]
    assert any(u.startswith("__libc_start_call_main+122;main+") and k.startswith("entry_SYSCALL")
               and int(v) == nk for u, k, v in rows)
    # the other key parts are the root frames, as in the catalog's profile entry
    assert list(t.frames["@cu"].columns) == ["key0", "key1", "ustack", "value"]
    cu = check_totals(t, "@cu", "cu", nu)
    assert {s[0] for s in cu} == {"cxx_spin"} and all(s[1].isdigit() for s in cu)
    assert list(t.frames["@ck"].columns) == ["key0", "kstack", "value"]
    ck = check_totals(t, "@ck", "ck", nk)
    assert all(s[0] == "cxx_spin" and all(f.endswith("_[k]") for f in s[1:]) for s in ck)


def exiting_program(binary: Path) -> str:
    """Around a workload that exits first: bpftrace then prints its user frames as raw
    addresses (perf mode: `[unknown]`), the shapes of perf mode, ustack(N) and stack values."""
    return f"""uprobe:{binary}:{SYSCALLS}
{{
  @u[ustack] = count(); @up[ustack(perf)] = count(); @u3[ustack(3)] = count();
  @pcu[pid, comm, ustack] = count(); @n = count();
}}
tracepoint:syscalls:sys_enter_getppid /comm == "cxx_spin"/
{{
  @k[kstack] = count(); @kp[kstack(perf)] = count(); @t[kstack, ustack] = count();
  @s[tid] = kstack; @su[tid] = ustack; @nt = count();
}}
"""


@pytest.mark.usefixtures("needs_bpf")
def test_perf_mode_ustack_n_raw_frames_and_stack_values(cxx_spin: Path, tmp_path: Path) -> None:
    t = harness.trace(exiting_program(cxx_spin), workload=[str(cxx_spin), "1"],
                      out=tmp_path / "run")
    assert t.meta.ended_by == "workload-exit" and t.path is not None
    said = (t.path / "workload.stdout.txt").read_text()
    calls = int(re.search(r"getppid (\d+)", said).group(1))  # type: ignore[union-attr]
    assert calls > 100
    # the workload's own count, the probe's count and every stack map's total agree
    assert int(t.frames["@n"]["value"][0]) == int(t.frames["@nt"]["value"][0]) == calls
    columns = {"@u": "ustack", "@up": "ustack", "@u3": "ustack", "@k": "kstack",
               "@kp": "kstack"}
    for name, column in columns.items():
        assert list(t.frames[name].columns) == [column, "value"], name
        counts = check_totals(t, name, name[1:], calls)
        kernel = [f.endswith("_[k]") for s in counts for f in s]
        assert all(kernel) if column == "kstack" else not any(kernel), name
    assert all(len(s) == 3 for s in t.frames["@u3"]["ustack"])
    raw = {f for s in t.frames["@u"]["ustack"] for f in s}
    assert raw and all(f.startswith("0x") for f in raw)  # named after the workload exited
    perf_user = {f for s in t.frames["@up"]["ustack"] for f in s}
    assert any(f.endswith("([unknown])") for f in perf_user)
    assert all(re.match(r"ffff[0-9a-f]{12} \S+\+\d+", f)
               for s in t.frames["@kp"]["kstack"] for f in s)
    assert list(t.frames["@pcu"].columns) == ["key0", "key1", "ustack", "value"]
    pcu = check_totals(t, "@pcu", "pcu", calls)
    assert all(s[0].isdigit() and s[1] == "cxx_spin" for s in pcu)
    assert list(t.frames["@t"].columns) == ["kstack", "ustack", "value"]
    tk = check_totals(t, "@t", "t", calls)
    assert all(user_frames_first(s) and s[-1].endswith("_[k]") and not s[0].endswith("_[k]")
               for s in tk)
    # stacks as values: one entry per thread, the program saying which stack each is
    for name, kernel in (("@s", True), ("@su", False)):
        frame = t.frames[name]
        assert list(frame.columns) == ["key0", "value"] and len(frame) == 1
        counts = folded(t.path / f"{name[1:]}.folded")
        (stack, one), = counts.items()
        assert one == 1 and stack[0] == str(frame["key0"][0])
        assert all(f.endswith("_[k]") == kernel for f in stack[1:])
        assert "1 entries" in (t.path / f"{name[1:]}.flame.html").read_text()


PROFILE = """profile:hz:199 /comm == "cxx_spin"/
{
  @[ustack, kstack] = count(); @n = count();
  @kp[kstack(perf)] = count(); @up[ustack(perf)] = count(); @u3[ustack(3)] = count();
}
interval:s:3 { exit(); }
"""


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", ["system", "0.27"])
def test_profile_samples_in_every_stack_shape(release: str, cxx_spin: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU samples of the workload: in user mode the kernel part is empty (0.17 prints a failed
    stack lookup alike, so equal keys may repeat within the printing); every map's rows, folded
    stacks and page add up to the samples `@n` counted."""
    monkeypatch.setenv("BPFTRACE_CACHE_USER_SYMBOLS", "1")
    t = harness.trace(PROFILE, workload=[str(cxx_spin), "60"], out=tmp_path / "run",
                      bpftrace=None if release == "system" else release)
    assert t.meta.ended_by == "program-exit" and t.path is not None
    assert t.output is not None and not t.output.unparsed
    n = int(t.frames["@n"]["value"][0])
    assert n > 20  # 199 Hz for 3 s of a workload sharing 2 CPUs with the load of the machine
    at = t.frames["@"]
    assert list(at.columns) == ["ustack", "kstack", "value"]
    user_mode = at[at["kstack"].map(len) == 0]
    assert len(user_mode) and len(user_mode) < len(at)  # read(2) and getppid(2) are sampled
    frames = {f for u in at["ustack"] for f in u}
    assert any(f.startswith("demo::Acc<double>::operator()(double)+") for f in frames)
    counts = check_totals(t, "@", "at", n)
    assert all(user_frames_first(s) for s in counts)
    assert sum(c for s, c in counts.items() if not s[-1].endswith("_[k]")) == int(
        user_mode["value"].sum())
    for name, column in (("@kp", "kstack"), ("@up", "ustack"), ("@u3", "ustack")):
        assert list(t.frames[name].columns) == [column, "value"], name
        folded_counts = check_totals(t, name, name[1:], n)
        marked = [f.endswith("_[k]") for s in folded_counts for f in s if f != "[empty stack]"]
        assert all(marked) if column == "kstack" else not any(marked), name
    assert all(len(s) <= 3 for s in t.frames["@u3"]["ustack"])
    assert any(f.endswith("(" + str(cxx_spin) + ")") for s in t.frames["@up"]["ustack"]
               for f in s)  # perf mode names the file of each user frame


@pytest.mark.usefixtures("needs_bpf")
def test_exited_workloads_cxx_frames_named_as_bpftrace_names_them(
        cxx_spin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness names an exited workload's user frames (harness.host.usyms) as bpftrace names
    a live one's: `ustack(perf)` prints each frame's address beside bpftrace's own name, and the
    harness's name for that address, from the process's map, is the same (C++ demangled)."""
    from harness.host import usyms

    monkeypatch.setenv("BPFTRACE_CACHE_USER_SYMBOLS", "1")
    work = subprocess.Popen([str(cxx_spin), "60"], stdout=subprocess.DEVNULL)
    try:
        program = (f"uprobe:{cxx_spin}:{SYSCALLS} /pid == {work.pid}/ "
                   "{ @[ustack(perf)] = count(); }\ninterval:s:1 { exit(); }\n")
        t = harness.trace(program, duration=30, out=False)
        maps = usyms.parse_maps(Path(f"/proc/{work.pid}/maps").read_text())  # all loaded now
    finally:
        work.kill()
        work.wait()
    frames = {f for s in t.frames["@"]["ustack"] for f in s}
    compared = 0
    for frame in frames:
        address, _, rest = frame.partition(" ")
        printed = rest.rsplit(" (", 1)[0]
        if printed.startswith("0x"):  # bpftrace could not name it either
            continue
        assert usyms.name(int(address, 16), maps) == printed, frame
        compared += 1
    assert compared >= 8 and any(f.startswith("demo::") for f in
                                 (x.partition(" ")[2] for x in frames))


RAW = """tracepoint:syscalls:sys_enter_getppid /comm == "cxx_spin"/
{
  @kr[kstack(raw)] = count(); @ur[ustack(raw, 4)] = count(); @t[ustack(raw), kstack(raw)] = count();
  @n = count();
}
"""


@pytest.mark.usefixtures("needs_bpf")
def test_raw_mode_stacks_of_027_are_stacks(cxx_spin: Path, tmp_path: Path) -> None:
    """bpftrace 0.20+'s `kstack(raw)`/`ustack(raw)` print bare addresses on unindented lines
    (no name, no indentation): each map is a stack column whose total, folded stacks and page
    equal the workload's own count of its getppid() calls."""
    t = harness.trace(RAW, workload=[str(cxx_spin), "1"], out=tmp_path / "run", bpftrace="0.27")
    assert t.path is not None and t.output is not None and not t.output.unparsed
    said = (t.path / "workload.stdout.txt").read_text()
    calls = int(re.search(r"getppid (\d+)", said).group(1))  # type: ignore[union-attr]
    assert calls > 100 and int(t.frames["@n"]["value"][0]) == calls
    for name, column in (("@kr", "kstack"), ("@ur", "ustack")):
        assert list(t.frames[name].columns) == [column, "value"], name
        check_totals(t, name, name[1:], calls)
    kernel = {f for s in t.frames["@kr"]["kstack"] for f in s}
    assert kernel and all(re.fullmatch(r"ffff[0-9a-f]{12}", f) for f in kernel)
    assert all(0 < len(s) <= 4 for s in t.frames["@ur"]["ustack"])
    assert list(t.frames["@t"].columns) == ["ustack", "kstack", "value"]
    tk = check_totals(t, "@t", "t", calls)
    assert all(user_frames_first(s) and s[-1].endswith("_[k]") for s in tk)
