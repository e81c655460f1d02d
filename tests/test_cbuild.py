"""The one cache-keyed C build (harness.cbuild), and its two users: native workloads
(harness.workloads.native) and twins (harness.twin.build).

A cached build is only right if every input is in its key: an edit of a source or a header,
another flag or another compiler must build anew, and an equal build must not. The built
programs are run, so a rebuild is seen in what the program does, not only in a new name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from importlib import resources
from pathlib import Path

import pytest

from harness import cbuild
from harness.twin import build as twin
from harness.workloads.native import NoBuild, build

BTF = Path("/sys/kernel/btf/vmlinux")


def _compiler(path: Path, version: str) -> str:
    """A stand-in compiler (a script whose --version says `version`)."""
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(0o755)
    return str(path)


def test_the_key_changes_with_each_input_and_only_then(tmp_path: Path) -> None:
    source, header = tmp_path / "a.c", tmp_path / "a.h"
    source.write_text("int main(void) { return 0; }\n")
    header.write_text("#define N 1\n")
    cc1 = _compiler(tmp_path / "cc1", "cc 12.2.0")
    cc2 = _compiler(tmp_path / "cc2", "cc 13.1.0")

    def key(**changed: object) -> str:
        given: dict[str, object] = {"files": (source, header), "texts": {"gen.c": "x"},
                                    "compilers": (cc1,), "flags": ("-O2",)}
        return cbuild.cache_key(**{**given, **changed})  # type: ignore[arg-type]

    made = os.stat(cc1).st_mtime_ns
    base = key()
    assert key() == base and len(base) == cbuild.KEY_CHARS
    others = {
        "flag": key(flags=("-O2", "-pthread")),
        "flag order": key(flags=("-pthread", "-O2")),
        "compiler": key(compilers=(cc2,)),
        "text": key(texts={"gen.c": "y"}),
        "no header": key(files=(source,)),
    }
    header.write_text("#define N 2\n")
    others["header"] = key()
    _compiler(Path(cc1), "cc 12.2.0 (rebuilt)")  # the same compiler's file, upgraded in place
    others["compiler upgraded"] = key()
    _compiler(Path(cc1), "cc 12.2.0")
    header.write_text("#define N 1\n")
    os.utime(cc1, ns=(made, made))
    assert key() == base  # the same bytes again: the same entry
    source.write_text("int main(void) { return 1; }\n")
    others["source"] = key()
    assert base not in others.values() and len(set(others.values())) == len(others), others


def test_an_entry_is_made_once_and_a_failure_leaves_nothing(own_cache: Path) -> None:
    made: list[Path] = []

    def make(work: Path) -> None:
        made.append(work)
        (work / "product").write_text("done")

    threads = [threading.Thread(target=cbuild.cached, args=("e-1", make)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = cbuild.cached("e-1", make)
    assert len(made) == 1 and (out / "product").read_text() == "done"

    def fail(work: Path) -> None:
        (work / "half").write_text("x")
        raise RuntimeError("compiler said no")

    with pytest.raises(RuntimeError, match="compiler said no"):
        cbuild.cached("e-2", fail)
    assert sorted(p.name for p in cbuild.cache_root().iterdir()) == ["e-1", "e-1.lock",
                                                                    "e-2.lock"]


def _exit_status(binary: Path) -> int:
    return subprocess.run([str(binary)], check=False, timeout=30).returncode


def test_a_workload_is_rebuilt_when_its_source_header_flags_or_compiler_change(
        own_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The program's exit status is what its header and flags say: a rebuild shows in it."""
    source, header = tmp_path / "exits.c", tmp_path / "exits.h"
    source.write_text('#include "exits.h"\n#ifndef EXTRA\n#define EXTRA 0\n#endif\n'
                      "int main(void) { return N + EXTRA; }\n")
    header.write_text("#define N 3\n")
    first = build(source, headers=(header,))
    assert first is not None and _exit_status(first) == 3
    made = first.stat().st_mtime_ns
    assert build(source, headers=(header,)) == first and first.stat().st_mtime_ns == made
    header.write_text("#define N 4\n")
    second = build(source, headers=(header,))
    assert second is not None and second != first and _exit_status(second) == 4
    third = build(source, ("-DEXTRA=10",), headers=(header,))
    assert third is not None and third not in (first, second) and _exit_status(third) == 14
    source.write_text(source.read_text().replace("N + EXTRA", "N + EXTRA + 1"))
    fourth = build(source, headers=(header,))
    assert fourth is not None and fourth not in (first, second, third)
    assert _exit_status(fourth) == 5
    if shutil.which("clang") is None:
        pytest.skip("no second compiler (clang) to build with")
    monkeypatch.setenv("CC", "clang")
    other = build(source, headers=(header,))
    assert other is not None and other not in (first, second, third, fourth)
    assert _exit_status(other) == 5
    # the binary is named after its source, as the kernel's comm shows it
    assert all(p.name.startswith("exits-") for p in (first, second, third, fourth, other))


def test_a_workload_the_compiler_refuses_is_one_line_and_no_entry(
        own_cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return undefined_name; }\n")
    with pytest.raises(NoBuild, match=r"cc could not build broken.c: \S"):
        build(source)
    assert [p.name for p in cbuild.cache_root().iterdir() if p.suffix != ".lock"] == []


@pytest.fixture
def twin_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_cache: Path) -> Path:
    """A copy of the package's twin sources, edited by the test in place of the package."""
    if not BTF.exists():
        pytest.skip("no kernel BTF (/sys/kernel/btf/vmlinux) to build a twin against")
    copy = tmp_path / "twin-src"
    shutil.copytree(Path(str(resources.files("harness.twin"))), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(twin, "source_dir", lambda: copy)
    return copy


TWIN_C = '#include "twin.bpf.h"\nchar LICENSE[] SEC("license") = "GPL";\n'


def test_a_twin_is_rebuilt_when_its_text_or_shared_header_change(twin_sources: Path) -> None:
    first = twin.build_twin(TWIN_C)
    assert twin.build_twin(TWIN_C) == first
    shared = twin_sources / twin.TWIN_HEADER
    shared.write_text(shared.read_text() + "\n#define KTRACE_TEST_MARK 1\n")
    second = twin.build_twin(TWIN_C)
    assert second.bpf_obj.parent != first.bpf_obj.parent
    assert "KTRACE_TEST_MARK" in (second.source.parent / twin.TWIN_HEADER).read_text()
    third = twin.build_twin(TWIN_C + "int ktrace_test_mark SEC(\".data\") = 1;\n")
    assert third.bpf_obj.parent not in (first.bpf_obj.parent, second.bpf_obj.parent)
    assert third.sha256 != second.sha256  # the object itself differs: it holds the variable


def test_the_loaders_are_rebuilt_when_the_map_dump_header_changes(twin_sources: Path) -> None:
    first = twin.generic_loader()
    assert twin.generic_loader() == first
    dump = twin_sources / twin.DUMP_HEADER
    dump.write_text(dump.read_text() + "\n/* edited */\n")
    second = twin.generic_loader()
    assert second != first and second.exists()
