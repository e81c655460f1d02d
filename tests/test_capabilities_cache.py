"""The capability probe's tool answers are cached per boot and per tool binary (harness run
would otherwise ask bpftrace --info and five --version commands before every run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.host import capabilities as cap


def test_answers_come_from_the_cache_until_the_key_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRACE_CACHE", str(tmp_path))
    first = cap._tool_answers()
    cache = tmp_path / "capabilities.json"
    stored = json.loads(cache.read_text())
    assert stored["key"] == cap._cache_key()
    assert stored["tools"] == first["tools"] and stored["info"] == first["info"]

    stored["tools"]["bpftrace"] = "bpftrace from the cache"
    cache.write_text(json.dumps(stored))
    assert cap._tool_answers()["tools"]["bpftrace"] == "bpftrace from the cache"

    stored["key"]["boot"] = "another boot"
    cache.write_text(json.dumps(stored))
    assert cap._tool_answers()["tools"]["bpftrace"] == first["tools"]["bpftrace"]
    assert json.loads(cache.read_text())["key"] == cap._cache_key()  # rewritten


def test_a_broken_cache_file_is_probed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRACE_CACHE", str(tmp_path))
    (tmp_path / "capabilities.json").write_text("{not json")
    answers = cap._tool_answers()
    assert set(answers["tools"]) == set(cap.TOOL_COMMANDS)
    assert json.loads((tmp_path / "capabilities.json").read_text())["key"] == cap._cache_key()
