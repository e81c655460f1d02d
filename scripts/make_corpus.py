#!/usr/bin/env python3
"""Regenerate tests/data/corpus/: real bpftrace runs, text and `-f json` of the SAME events.

Each case is a directory holding `program.bt`, `stdout.txt` (text mode), `stdout.json`
(`-f json`) and `case.json` (the workload, the key names the test passes to `to_frames`, the
bpftrace version). Text and json come from two bpftrace processes attached at the same time
around ONE workload run: the workload is started behind the gate (harness.host.workload), both
tracers get its pid as `$1`, and it is released only when both have printed the BEGIN marker
(added to workload programs, which have no BEGIN of their own: bpftrace allows one);
when it has exited both get SIGINT together. Two separate runs would differ in stack addresses,
tie order and counts. Cases without a workload are deterministic BEGIN/interval programs.
Needs root and bpftrace.
Usage: scripts/make_corpus.py [--bpftrace PATH] [--out DIR] [CASE ...]

The newest release's format (tests/data/corpus_0.23) came from bpftrace 0.23.2: Debian trixie's
package and its 21 dependencies fetched with `apt-get download` under a private apt state dir
(sources.list naming trixie), each unpacked with `dpkg -x` into one root R, and started as
`R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path R/lib/x86_64-linux-gnu:\
R/usr/lib/x86_64-linux-gnu R/usr/bin/bpftrace "$@"` from a wrapper script (never installed
on the host). Then:
  scripts/make_corpus.py --bpftrace WRAPPER --out tests/data/corpus_0.23
(those files were made by an earlier version of this script, with `-c` and `cpid`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.host.workload import GatedWorkload  # noqa: E402

CORPUS = REPO / "tests" / "data" / "corpus"
UDP_SEND = REPO / "harness" / "workloads" / "udp_send.py"
UDP = [sys.executable, str(UDP_SEND), "--no-wait", "--count", "12", "--sizes", "1,100,1000"]
READY = "corpus-ready"
BEGIN_MARK = f'BEGIN {{ printf("{READY}\\n"); }}\n'
# Four phases of 10, 20, 30, 40 getppid() calls, each ended by one getpgrp() (the print mark)
# and a pause: print() reads the map when bpftrace's userspace handles the event, so the
# next phase must wait for that or its calls land in this printing.
PHASES = [sys.executable, "-c",
          "import os, time\nfor i in range(4):\n    for _ in range(10 * (i + 1)):\n"
          "        os.getppid()\n    os.getpgrp()\n    time.sleep(0.3)\n"]

# name -> (program, workload argv or None, key names per map)
CASES: dict[str, tuple[str, list[str] | None, dict[str, list[str]]]] = {
    "udp_kstack": (
        """tracepoint:net:net_dev_queue /pid == $1/ {
  @stacks[kstack] = count();
  @by_comm_stack[comm, kstack] = count();
  @len = hist(args->len);
  @len_lin = lhist(args->len, 0, 1000, 100);
  @bytes = sum(args->len);
  @smallest = min(args->len);
  @largest = max(args->len);
  @mean = avg(args->len);
  @len_stats = stats(args->len);
  @tuple[comm, pid - $1, args->len] = count();
}
""", UDP, {}),
    "syscalls_tuples": (
        """tracepoint:syscalls:sys_enter_sendto /pid == $1/ {
  @calls[comm, pid - $1] = count();
  @fd_len[args->fd - args->fd, args->len] = count();
  @stack_len[kstack, args->len] = sum(args->len);
}
""", UDP, {}),
    "odd_strings": (
        """BEGIN {
  @paths["/tmp/a b, [c]: \\"d\\" {e}"] = count();
  @paths["/usr/lib/x86_64-linux-gnu"] = count();
  @label["key: with colon", 3] = 7;
  @label["brackets ] [ in", -4] = 8;
  @str_value["k"] = "a value, with: stuff";
  @empty["e"] = "";
  printf("hello: @x[1]: 3 (printf that looks like a map)\\n");
  exit();
}
""", None, {"@paths": ["path"], "@label": ["text", "n"], "@str_value": ["k"], "@empty": ["k"]}),
    "negative_hist": (
        """BEGIN {
  @neg[-5] = -3;
  @neg[0] = 0;
  @neg[-1] = 9;
  @total = sum(-10);
  @lo = min(-7);
  @hi = max(-2);
  @avg_neg = avg(-9);
  @h = hist(-3); @h = hist(0); @h = hist(1); @h = hist(5); @h = hist(4000); @h = hist(3000000);
  @lh = lhist(-20, 0, 30, 10); @lh = lhist(-5, 0, 30, 10); @lh = lhist(15, 0, 30, 10);
  @lh = lhist(100, 0, 30, 10);
  @keyed_h[1] = hist(64); @keyed_h[-2] = hist(7);
  @st = stats(-4); @st = stats(10);
  @keyed_st["a"] = stats(5); @keyed_st["b"] = stats(1);
  exit();
}
""", None, {"@keyed_st": ["name"]}),
    "print_interval": (
        """BEGIN { printf("start\\n"); }
interval:ms:100 {
  @ticks = @ticks + 1;
  @sq[@ticks] = @ticks * @ticks;
  @hits = count();
  printf("tick %d\\n", @ticks);
  print(@sq);
  print(@ticks);
  if (@ticks == 3) { exit(); }
}
END { printf("end\\n"); }
""", None, {}),
    # interval printing with clear(): the same ticks in both processes (no outside events)
    "interval_clear": (
        """interval:ms:50 {
  @n = @n + 1;
  @per_tick[@n % 2] = count();
  @lin = lhist(@n, 0, 10, 2);
  @total = sum(@n);
  print(@per_tick);
  print(@lin);
  print(@total);
  clear(@per_tick);
  clear(@lin);
  if (@n == 5) { exit(); }
}
""", None, {}),
    # print() inside probes with printf between, driven by the workload's own phase marks
    "print_phases": (
        """tracepoint:syscalls:sys_enter_getppid /pid == $1/ {
  @calls[comm] = count();
  @per_phase = count();
}
tracepoint:syscalls:sys_enter_getpgrp /pid == $1/ {
  @phase = @phase + 1;
  printf("phase %d done\\n", @phase);
  print(@calls);
  print(@per_phase);
  clear(@calls);
  clear(@per_phase);
}
""", PHASES, {"@calls": ["comm"]}),
    # newline, `]: `, `, `, quotes, tabs and UTF-8 in keys and values
    "string_edges": (
        """BEGIN {
  @nl_key["line one\\nline two"] = 1;
  @nl_key["plain"] = 2;
  @nl_key["three\\nline\\nkey"] = 3;
  @nl_val["a"] = "first\\nsecond";
  @nl_val["b"] = "plain";
  @nl_val["c"] = "x\\ny\\nz";
  @nl_val["d"] = "end";
  @colon["k]: v"] = 4;
  @colon["[x]: [y]"] = 5;
  @comma["a, b", 1] = 6;
  @comma["c, d, e", 2] = 7;
  @comma["f", 3] = 8;
  @quote["say \\"hi\\""] = "\\"quoted\\" value";
  @tab["a\\tb"] = "c\\td";
  @utf8["\\xc3\\xa9t\\xc3\\xa9"] = "caf\\xc3\\xa9";
  @utf8["\\xe2\\x82\\xac"] = "\\xf0\\x9f\\x90\\x9d";
  exit();
}
""", None, {"@nl_key": ["k"], "@nl_val": ["k"], "@colon": ["k"], "@comma": ["s", "n"],
            "@quote": ["k"], "@tab": ["k"], "@utf8": ["k"]}),
    # kstack/ustack as map VALUES, from the same sends
    "stack_values": (
        """tracepoint:net:net_dev_queue /pid == $1/ {
  @last_k[args->len] = kstack;
  @last_k3[args->len] = kstack(3);
  @by_comm[comm] = kstack(2);
}
""", UDP, {}),
    # 0.17 prints keyed ksym/usym/inet/kaddr values without a newline between entries
    "keyed_syms": (
        """BEGIN {
  @ksym[1] = ksym(kaddr("vfs_read"));
  @ksym[2] = ksym(kaddr("vfs_write"));
  @usym[1] = usym(0);
  @usym[2] = usym(1);
  @inet4[1] = ntop(2, 0x0100007f);
  @inet4[2] = ntop(2, 0x0200000a);
  @inet6[1] = ntop(pton("::1"));
  @inet6[2] = ntop(pton("fe80::1"));
  @kaddr[1] = kaddr("vfs_read");
  @kaddr[2] = kaddr("vfs_write");
  @one_sym = ksym(kaddr("vfs_read"));
  exit();
}
""", None, {}),
    # zero(), clear(), delete(); maps empty at exit; a zeroed hist prints its header alone
    "zero_clear_delete": (
        """BEGIN {
  @zeroed[1] = count(); @zeroed[2] = count(); zero(@zeroed);
  @cleared[1] = 5; clear(@cleared);
  @deleted[1] = 1; @deleted[2] = 2; @deleted[3] = 3; delete(@deleted[2]);
  @all_deleted[7] = 7; delete(@all_deleted[7]);
  @zero_hist = hist(10); zero(@zero_hist);
  @zero_keyed_hist[1] = hist(10); @zero_keyed_hist[2] = hist(20); zero(@zero_keyed_hist);
  @zero_stats = stats(4); zero(@zero_stats);
  @zero_scalar = 9; zero(@zero_scalar);
  printf("before print\\n");
  print(@deleted);
  printf("between\\n");
  print(@cleared);
  printf("after\\n");
  exit();
}
""", None, {}),
    # 64-bit and negative hist values; 0.17's json shifts the [2G, 4G) bucket by 32 bits
    "hist_64bit": (
        """BEGIN {
  @h = hist(3000000000); @h = hist(1 << 33); @h = hist(1 << 62); @h = hist(-1);
  @h = hist(0x7fffffffffffffff); @h = hist(-0x7fffffffffffffff - 1); @h = hist(70000);
  @lh = lhist(-1000000, 0, 4000000000, 1000000000); @lh = lhist(5000000000, 0, 4000000000,
  1000000000); @lh = lhist(-0x7fffffffffffffff, 0, 4000000000, 1000000000);
  @lh = lhist(3500000000, 0, 4000000000, 1000000000);
  @keyed[1] = hist(2147483648); @keyed[2] = hist(4294967295); @keyed[3] = hist(1);
  exit();
}
""", None, {}),
    "stats_extremes": (
        """BEGIN {
  @max_st = stats(0x7fffffffffffffff);
  @min_st = stats(-0x7fffffffffffffff - 1);
  @two = stats(0x7fffffffffffffff); @two = stats(0x7fffffffffffffff);
  @keyed["big"] = stats(0x7fffffffffffffff); @keyed["small"] = stats(-0x7fffffffffffffff - 1);
  @avg_big = avg(0x7fffffffffffffff);
  @sum_wrap = sum(0x7fffffffffffffff); @sum_wrap = sum(1);
  @mx = max(0x7fffffffffffffff);
  exit();
}
""", None, {"@keyed": ["name"]}),
    # values 0.17's json writes unquoted
    "unquoted_values": (
        """BEGIN {
  @when[1] = strftime("%Y-%m-%d %H:%M", 0);
  @when[2] = strftime("%s", 0);
  @one_when = strftime("%H:%M:%S", 0);
  @err[1] = strerror(2);
  @err[2] = strerror(13);
  @one_err = strerror(1);
  @mac[1] = macaddr(0);
  @one_mac = macaddr(0);
  @cg[1] = cgroup_path(cgroup);
  @one_cg = cgroup_path(cgroup);
  exit();
}
""", None, {}),
}


class Tracer:
    """One bpftrace process whose stdout is read all run (it blocks when nobody reads)."""

    def __init__(self, bpftrace: str, program: Path, json_mode: bool, pid: int | None) -> None:
        self.cmd = [bpftrace, *(["-f", "json"] if json_mode else []), str(program),
                    *([str(pid)] if pid is not None else [])]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", errors="surrogateescape")
        self.lines: list[str] = []
        self.stderr = ""
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.err_reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if READY in line:
                self.ready.set()
        self.ready.set()  # ended: nothing more will come

    def stop(self, timeout: float = 60) -> str:
        """Wait for the exit (one SIGINT was sent, or the program exits itself): a second
        SIGINT would kill bpftrace while it prints its maps."""
        try:  # only the reader threads read the pipes (communicate() would race them)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit(f"make_corpus: {shlex.join(self.cmd)} did not stop") from None
        self.reader.join()
        self.err_reader.join()
        if self.proc.returncode != 0:
            raise SystemExit(f"make_corpus: {shlex.join(self.cmd)} failed: "
                             f"{self.stderr.strip()[-400:]}")
        return "".join(self.lines)


def run_case(bpftrace: str, program: Path, workload: list[str] | None) -> tuple[str, str]:
    """Text and json of one run: both tracers attached before the workload is released."""
    gated = GatedWorkload(workload) if workload else None
    pid = gated.pid if gated else None
    tracers = [Tracer(bpftrace, program, json_mode, pid) for json_mode in (False, True)]
    try:
        if gated:
            for t in tracers:
                if not t.ready.wait(60) or READY not in "".join(t.lines):
                    raise SystemExit(f"make_corpus: {shlex.join(t.cmd)} never became ready")
            time.sleep(0.3)  # BEGIN fired; let both settle before the first event
            gated.go()
            if gated.wait(timeout=120) != 0:
                raise SystemExit(f"make_corpus: workload {shlex.join(workload or [])} failed")
            time.sleep(0.3)  # the last events reach both maps
            for t in tracers:  # SIGINT to both at once
                if t.proc.poll() is None:
                    t.proc.send_signal(signal.SIGINT)
        text, js = (t.stop() for t in tracers)
    finally:
        if gated:
            gated.close()
        for t in tracers:
            if t.proc.poll() is None:
                t.proc.kill()
    return text, js


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bpftrace", default="bpftrace", help="bpftrace binary (default: on PATH)")
    ap.add_argument("--out", type=Path, default=CORPUS, help=f"corpus dir (default {CORPUS})")
    ap.add_argument("cases", nargs="*", help=f"cases (default: all of {', '.join(CASES)})")
    args = ap.parse_args(argv)
    unknown = set(args.cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    version = subprocess.run([args.bpftrace, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    for name in args.cases or list(CASES):
        program_text, workload, key_names = CASES[name]
        case = args.out / name
        case.mkdir(parents=True, exist_ok=True)
        program = case / "program.bt"
        program.write_text((BEGIN_MARK if workload else "") + program_text)
        text, js = run_case(args.bpftrace, program, workload)
        (case / "stdout.txt").write_text(text, encoding="utf-8", errors="surrogateescape")
        (case / "stdout.json").write_text(js, encoding="utf-8", errors="surrogateescape")
        shown = None if workload is None else shlex.join(
            ["python3" if a == sys.executable else a.replace(str(REPO) + "/", "")
             for a in workload])
        meta = {"workload": shown, "key_names": key_names, "bpftrace": version,
                "same_events": True}
        (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
