"""scripts/bench_sources.py: a bench written before the content-addressed layout is moved into
it without measuring again: the programs' texts as measured, every figure as it was."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

from bench_files import programs_measured

from harness.compare import bench

REPO = Path(__file__).resolve().parent.parent
OLD_FIELDS = [f for f in bench.ROW_FIELDS if f != "program"]
TEXTS = {".bt": "tracepoint:x:y { @ = count(); }\n", ".bpf.c": "/* the twin */\n",
         ".floor.bpf.c": "/* the floor */\n"}


def _old_bench(out: Path, stem: str) -> list[dict[str, str]]:
    rows = [dict.fromkeys(OLD_FIELDS, "") | {"bench": "x", "round": "0", "mode": mode,
                                               "kernel_ns_per_event": f"{i}.5"}
            for i, mode in enumerate(["untraced", "floor", "bpftrace", "libbpf", "both:libbpf"])]
    with (out / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=OLD_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.md").write_text("# x\n\n- attach type: tracepoint.\n"
                                    "- cycles and instructions per run: not measured.\n")
    for suffix, text in TEXTS.items():
        (out / f"{stem}{suffix}").write_text(text)
    return rows


def test_old_benches_move_into_sources_once_each(tmp_path: Path) -> None:
    before = {stem: _old_bench(tmp_path, stem) for stem in ("x-a", "x-b")}
    script = [sys.executable, str(REPO / "scripts" / "bench_sources.py"), "--dir", str(tmp_path)]
    done = subprocess.run(script, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 benches moved" in done.stderr
    # the two benches measured the same programs: one file each, named by its content
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == sorted(
        hashlib.sha256(t.encode()).hexdigest()[:16] + s for s, t in TEXTS.items())
    for stem, rows in before.items():
        assert not any((tmp_path / f"{stem}{suffix}").exists() for suffix in TEXTS)
        with (tmp_path / f"{stem}.csv").open(newline="") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == list(bench.ROW_FIELDS)
            after = list(reader)
        assert [{k: r[k] for k in OLD_FIELDS} for r in after] == rows  # figures as they were
        measured = programs_measured(tmp_path, after)
        assert measured == {"floor": TEXTS[".floor.bpf.c"], "bpftrace": TEXTS[".bt"],
                            "libbpf": TEXTS[".bpf.c"]}
        md = (tmp_path / f"{stem}.md").read_text().splitlines()
        assert md[-2].startswith("- programs measured: floor [sources/")
        assert "twin.bpf.h" not in md[-2]  # these twins were measured with their helpers inline
        assert md[-1].startswith("- cycles and instructions per run:")
    again = subprocess.run(script, capture_output=True, text=True, check=False, timeout=120)
    assert again.returncode == 0 and "0 benches moved" in again.stderr
