#!/usr/bin/env python3
"""Parse speed: text (Lark grammar) vs -f json, on one real 100,000-key bpftrace run.

Runs bpftrace once per format (cached under /tmp), then times text -> frames and
json -> frames (json.loads + DataFrame via harness.output.parse.parse_json) side by side,
best of N rounds each, and peak memory (tracemalloc) of the text path against the
text size. Appends a row to results/bench/parse_speed.csv.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "bench" / "parse_speed.csv"
CACHE = Path("/tmp/ktrace_parse_bench")
KEYS = 100_000
# A BEGIN loop of 100,000 iterations is refused by 0.17's verifier, so the keys come from
# 100,000 getppid() calls of a child, each stored under the running count.
PROGRAM = """tracepoint:syscalls:sys_enter_getppid /pid == cpid/ {
  @m[@n] = @n;
  @n = @n + 1;
}
"""
CALLS = f"import os\nfor _ in range({KEYS}):\n    os.getppid()\n"


def capture(json_mode: bool) -> str:
    """The program's stdout, from the cache when the same program made it before."""
    CACHE.mkdir(exist_ok=True)
    dest = CACHE / ("out.json" if json_mode else "out.txt")
    prog = CACHE / "m.bt"
    if dest.exists() and prog.exists() and prog.read_text() == PROGRAM + CALLS:
        return dest.read_text()
    prog.write_text(PROGRAM)
    calls = CACHE / "calls.py"
    calls.write_text(CALLS)
    cmd = ["bpftrace", *(["-f", "json"] if json_mode else []), "-c",
           f"{sys.executable} {calls}", str(prog)]
    env = {"BPFTRACE_MAP_KEYS_MAX": str(KEYS * 2), "BPFTRACE_MAX_MAP_KEYS": str(KEYS * 2),
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_parse: bpftrace failed: {proc.stderr.strip()[-300:]}")
    dest.write_text(proc.stdout)
    prog.write_text(PROGRAM + CALLS)
    return proc.stdout


def best(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    from harness.output.frames import to_frames
    from harness.output.parse import parse_json, parse_text

    text, js = capture(False), capture(True)
    tf = to_frames(parse_text(text))["@m"]
    jf = to_frames(parse_json(js))["@m"]
    if len(tf) != KEYS or not tf.sort_values("key0").reset_index(drop=True).equals(
            jf.sort_values("key0").reset_index(drop=True)):
        raise SystemExit(f"bench_parse: text and json frames differ ({len(tf)} vs {len(jf)})")
    rounds = 5
    t_text = best(lambda: to_frames(parse_text(text)), rounds)
    t_json = best(lambda: to_frames(parse_json(js)), rounds)
    tracemalloc.start()
    to_frames(parse_text(text))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = {
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "keys": KEYS, "text_bytes": len(text.encode()), "json_bytes": len(js.encode()),
        "rounds": rounds, "text_s": f"{t_text:.4f}", "json_s": f"{t_json:.4f}",
        "text_over_json": f"{t_text / t_json:.2f}", "peak_mem_bytes": peak,
        "peak_over_text": f"{peak / len(text.encode()):.2f}",
    }
    new = not OUT.exists()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    print(", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
