"""Time as the records write it: one format for every start and end stamp (run.json, verdict
meta, fleet.json), below every stage that writes one."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(epoch: float) -> str:
    """Seconds since the epoch -> ISO-8601 UTC with milliseconds (run.json's `started_at`),
    e.g. `2026-11-27T09:06:22.123+00:00`; `datetime.fromisoformat` reads it back."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
