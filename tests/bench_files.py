"""What a bench wrote, read back the way a user finds it: the CSV's `program` column names each
mode's measured program, stored once under `sources/` by its content."""

from __future__ import annotations

import hashlib
from pathlib import Path


def one_round(events: int, out: Path) -> list[str]:
    """`harness bench` flags for the smallest real bench: one measured round, no warm-up."""
    return ["--rounds", "1", "--max-rounds", "1", "--warmup", "0", "--events", str(events),
            "--out", str(out)]


def programs_measured(out: Path, rows: list[dict[str, str]]) -> dict[str, str]:
    """mode -> the text of the program it measured (`both:` rows name their tracer's file)."""
    named: dict[str, str] = {}
    for row in rows:
        mode = row["mode"].removeprefix("both:")
        if row["mode"] == "untraced":
            assert row["program"] == "", row
            continue
        assert named.setdefault(mode, row["program"]) == row["program"], (mode, row)
    texts = {}
    for mode, name in named.items():
        path = out / name
        texts[mode] = path.read_text()
        assert path.parent == out / "sources", name
        assert path.name.startswith(hashlib.sha256(texts[mode].encode()).hexdigest()[:16]), name
    return texts
