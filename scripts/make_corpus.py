#!/usr/bin/env python3
"""Regenerate tests/data/corpus/: real bpftrace runs, text and `-f json`, same workload.

Each case is a directory holding `program.bt`, `stdout.txt` (text mode) and `stdout.json`
(`-f json`) from two runs of the same deterministic workload, plus `case.json` with the key
names the test passes to `to_frames` (string keys may hold ", ", which only the arity tells
apart). Needs root and bpftrace.
Usage: scripts/make_corpus.py [--bpftrace PATH] [--out DIR] [CASE ...]

The newest release's format comes from the same cases run by bpftrace 0.23.2: Debian trixie's
package and its 21 dependencies fetched with `apt-get download` under a private apt state dir
(sources.list naming trixie), each unpacked with `dpkg -x` into one root R, and started as
`R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path R/lib/x86_64-linux-gnu:\
R/usr/lib/x86_64-linux-gnu R/usr/bin/bpftrace "$@"` from a wrapper script (never installed
on the host). Then:
  scripts/make_corpus.py --bpftrace WRAPPER --out tests/data/corpus_0.23
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"
UDP_SEND = REPO / "harness" / "workloads" / "udp_send.py"
UDP = f"{sys.executable} {UDP_SEND} --no-wait --count 12 --sizes 1,100,1000"

# name -> (program, workload command for -c or None, key names per map)
CASES: dict[str, tuple[str, str | None, dict[str, list[str]]]] = {
    "udp_kstack": (
        """tracepoint:net:net_dev_queue /pid == cpid/ {
  @stacks[kstack] = count();
  @by_comm_stack[comm, kstack] = count();
  @len = hist(args->len);
  @len_lin = lhist(args->len, 0, 1000, 100);
  @bytes = sum(args->len);
  @smallest = min(args->len);
  @largest = max(args->len);
  @mean = avg(args->len);
  @len_stats = stats(args->len);
  @tuple[comm, pid - cpid, args->len] = count();
}
""", UDP, {}),
    "syscalls_tuples": (
        """tracepoint:syscalls:sys_enter_sendto /pid == cpid/ {
  @calls[comm, pid - cpid] = count();
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
}


def run(bpftrace: str, program: Path, workload: str | None, json_mode: bool) -> str:
    cmd = [bpftrace] + (["-f", "json"] if json_mode else [])
    if workload:
        cmd += ["-c", workload]
    cmd.append(str(program))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"make_corpus: {shlex.join(cmd)} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bpftrace", default="bpftrace", help="bpftrace binary (default: on PATH)")
    ap.add_argument("--out", type=Path, default=CORPUS, help=f"corpus dir (default {CORPUS})")
    ap.add_argument("cases", nargs="*", help=f"cases (default: all of {', '.join(CASES)})")
    args = ap.parse_args(argv)
    unknown = set(args.cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    for name in args.cases or list(CASES):
        program_text, workload, key_names = CASES[name]
        case = args.out / name
        case.mkdir(parents=True, exist_ok=True)
        program = case / "program.bt"
        program.write_text(program_text)
        (case / "stdout.txt").write_text(run(args.bpftrace, program, workload, json_mode=False))
        (case / "stdout.json").write_text(run(args.bpftrace, program, workload, json_mode=True))
        meta = {"workload": workload.replace(sys.executable, "python3").replace(str(REPO) + "/", "")
                if workload else None, "key_names": key_names,
                "bpftrace": subprocess.run([args.bpftrace, "--version"], capture_output=True,
                                           text=True, check=False).stdout.strip()}
        (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
