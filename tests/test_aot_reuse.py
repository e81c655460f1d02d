"""Programs compiled ahead of time once per shape, filled in per run (harness.lanes.aot_reuse).

The filled program is checked against the independent reading: bpftrace --aot compiling the
same text with the run's own values, byte for byte, for pids from 1 to pid_max and for other
markers. The proof's refusals (a text or an output that depends on a value elsewhere than its
slots) are checked on made-up texts and bytes, and a run whose template does not fit compiles
as before.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

import harness
from harness.lanes import aot_reuse
from harness.lanes.aot import compile_program, format_files, stop_pid
from harness.lanes.aot_reuse import Template, Values, fill_text, sentinel, shape, template
from harness.lanes.aot_run import AotRun

MARKER = "KTRACE_READY_1764880000000"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(aot_reuse, "store_dir", lambda: tmp_path)
    monkeypatch.delenv("KTRACE_AOT_REUSE", raising=False)
    return tmp_path


# --- pure: shapes, slots, fills ----------------------------------------------------------------


def test_a_shape_has_holes_where_only_the_pid_and_the_marker_go() -> None:
    def program(pid: int | None) -> str:
        return f'BEGIN {{ printf("{MARKER}\\n"); }}\nk:f /pid == {pid}/ {{ @[kstack] = count(); }}'

    got = shape(program, MARKER)
    assert got is not None and got.count(aot_reuse.PID_HOLE) == 1
    assert aot_reuse.MARKER_HOLE in got and MARKER not in got
    assert fill_text(got, Values(77, MARKER)) == program(77)
    assert fill_text(got, Values(None, MARKER)) is None  # a pid filter needs a pid
    # no pid filter: no pid hole, and any pid fills it
    flat = shape(lambda pid: program(0), MARKER)
    assert flat is not None and aot_reuse.PID_HOLE not in flat
    assert fill_text(flat, Values(None, MARKER)) == program(0)


@pytest.mark.parametrize("program", [
    lambda pid: f'BEGIN {{ printf("{MARKER}\\n"); }} k:f /pid == {pid}/ {{ @ = {pid % 1000}; }}',
    lambda pid: f"k:f /pid == {pid}/ {{ @ = count(); }}",  # no marker
    lambda pid: f'BEGIN {{ printf("{MARKER}\\n"); }} k:f /pid == {pid}/ {{ @ = "\0"; }}',
])
def test_a_text_that_depends_on_the_pid_elsewhere_has_no_shape(program: object) -> None:
    assert shape(program, MARKER) is None  # type: ignore[arg-type]


def _compiled(values: Values, filler: bytes = b"\x95" * 40) -> bytes:
    """Bytes laid out as bpftrace --aot lays out a program: values at fixed places."""
    v = values.slots()
    return filler[:7] + v["marker"] + filler[:9] + v["stop"] + filler[:13] + v["pid"] + filler


def test_the_slots_are_where_the_sentinels_bytes_are() -> None:
    a, b = sentinel(0, MARKER), sentinel(1, MARKER)
    assert a.marker != b.marker and len(a.marker) == len(MARKER)
    assert all(x != y for x, y in zip(a.marker[13:], b.marker[13:], strict=True))
    made = template(_compiled(a), _compiled(b), a, b)
    assert isinstance(made, Template)
    run = Values(4242, "KTRACE_READY_1764889999999")
    assert made.fill(run) == _compiled(run)
    assert made.fill(Values(4242, "KTRACE_READY_176488999999")) is None  # another form
    assert made.fill(Values(None, MARKER)) is None  # a pid slot needs a pid
    assert made.fill(Values(1 << 31, MARKER)) is None  # beyond an immediate


@pytest.mark.parametrize(("b_bytes", "why"), [
    (lambda b: _compiled(b) + b"\0", "differ in length"),
    (lambda b: _compiled(b, b"\x96" * 40), "differ outside the values' places"),
    (lambda b: _compiled(b)[:-8] + b.slots()["pid"] + b"\0" * 4, "different places"),
])
def test_two_compiles_that_differ_elsewhere_give_no_template(b_bytes: object, why: str) -> None:
    a, b = sentinel(0, MARKER), sentinel(1, MARKER)
    made = template(_compiled(a), b_bytes(b), a, b)  # type: ignore[operator]
    assert isinstance(made, str) and why in made


def test_templates_are_kept_whole_and_read_back(store: Path) -> None:
    a, b = sentinel(0, MARKER), sentinel(1, MARKER)
    made = template(_compiled(a), _compiled(b), a, b)
    assert isinstance(made, Template)
    aot_reuse.save("k1", made)
    assert aot_reuse.load("k1") == made
    assert [p.name for p in store.iterdir()] == ["k1.json"]
    (store / "k2.json").write_text("{not json")
    assert aot_reuse.load("k2") is None and aot_reuse.load("k3") is None


# --- real compiles: filled equals compiled, byte for byte ---------------------------------------


def _plans() -> list[tuple[str, harness.Plan, bool]]:
    """The syscalls entry (a tracepoint: its format is compiled in) and ktrace's kprobe program
    with its casts written as reads at this kernel's offsets (as a guest's run compiles it)."""
    return [("syscalls", harness.plan("syscalls"), False),
            ("ktrace", harness.plan("ktrace", attach="kprobe"), True)]


def _aot_run(plan: harness.Plan, portable: bool) -> AotRun:
    """The AotRun a remote run makes for `plan` (formats there: this machine's)."""
    from harness.lanes.btf import Btf
    from harness.spec.plan import Programs

    here = {rel: Path("/sys/kernel/tracing", rel).read_text()
            for rel in format_files(plan.program(1), plan.marker)}
    btf = Btf(Path("/sys/kernel/btf/vmlinux").read_bytes())
    programs = Programs(plan)
    return AotRun(plan.marker, "bpftrace", "this machine", here,
                  (lambda pid: programs.portable(pid, btf.field)) if portable else None,
                  plan.program, "bpftrace here")


@pytest.mark.kernel
def test_a_program_filled_in_is_the_program_compiled(store: Path) -> None:
    """The first run compiles, its template is made meanwhile and proven; later runs with other
    pids (1 .. pid_max) and markers fill it in: each equals bpftrace --aot's own compile of the
    same text, byte for byte; the notes say it was filled in."""
    from dataclasses import replace

    for name, plan, portable in _plans():
        first = _aot_run(plan, portable)
        answer = first.answer(plan.program(4242), 4242)
        assert "aot" in answer and first.reuse == "no template"
        first.settle()
        assert first.reuse == "made", (name, first.reuse)
        for pid in (1, 255, 256, 65536, 4_194_303):
            time.sleep(0.002)
            later_plan = replace(plan, marker=f"KTRACE_READY_{int(time.time() * 1000) + pid}")
            marker = later_plan.marker
            later = _aot_run(later_plan, portable)
            text = later_plan.program(pid)
            later.answer(text, pid)
            assert later.reuse == "filled", (name, pid, later.reuse)
            assert later.compiled is not None and later.compiled.seconds < 0.5
            ran = later.rewritten or text
            assert portable == (later.rewritten is not None)
            direct = compile_program(ran, marker)
            assert direct.data is not None and later.compiled.data == direct.data, (name, pid)
            assert struct.pack("<I", stop_pid(marker)) in direct.data
            assert any("filled into the same program compiled for an earlier run" in n
                       for n in later.notes), later.notes
            later.settle()
            assert later.reuse == "filled"


@pytest.mark.kernel
def test_a_run_whose_template_does_not_fit_compiles_as_before(store: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """A marker of another form, KTRACE_AOT_REUSE=0, and a run whose text is not exactly the
    template's text filled with its values, compile anew (and the last makes no template: its
    own compile is not the template filled)."""
    plan = harness.plan("syscalls")
    first = _aot_run(plan, False)
    first.answer(plan.program(4242), 4242)
    first.settle()
    assert first.reuse == "made"
    # a marker of another form (one digit more) fills nothing: compiled, and made anew
    from dataclasses import replace

    longer = plan.marker + "7"
    other = _aot_run(replace(plan, marker=longer), False)
    other.answer(replace(plan, marker=longer).program(99), 99)
    assert other.reuse == "no template" and other.compiled is not None
    other.settle()
    assert other.reuse == "made"
    # switched off: compiled, no template made
    monkeypatch.setenv("KTRACE_AOT_REUSE", "0")
    off = _aot_run(plan, False)
    off.answer(plan.program(99), 99)
    off.settle()
    assert off.reuse == "" and off.compiled is not None and off.compiled.data
    # the text handed to the run is not the template's text filled: compiled as before
    monkeypatch.delenv("KTRACE_AOT_REUSE")
    odd = _aot_run(plan, False)
    odd.answer(plan.program(99).replace("count()", "count() "), 99)
    assert odd.reuse.startswith("the program's template does not fit"), odd.reuse
    odd.settle()  # and no template made of it: its text is not the shape filled
    assert odd.reuse.startswith("the program's template does not fit"), odd.reuse
    assert len(list(store.iterdir())) == 2  # the first run's and the longer marker's


@pytest.mark.kernel
def test_a_template_that_does_not_match_the_runs_own_compile_is_not_kept(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third point of the proof: the template filled with the first run's values must be
    that run's compile (here the run's compile is made to differ by one byte)."""
    plan = harness.plan("syscalls")
    first = _aot_run(plan, False)
    first.answer(plan.program(4242), 4242)
    assert first.compiled is not None and first.compiled.data is not None
    first.compiled.data = first.compiled.data[:-1] + bytes([first.compiled.data[-1] ^ 1])
    first.settle()
    assert first.reuse.startswith("no template: filled with this run's values"), first.reuse
    assert not list(store.iterdir())
