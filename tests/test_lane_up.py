"""Guests kept up (`harness lane up|down|status`, harness.lanes.up) and programs compiled here
for the remote's bpftrace-aotrt (harness.lanes.aot).

The VM test boots a real 6.1 guest with sshd, runs over it through the SSH lane's code path
with the counts checked against the workload's own (100 sends, 100 getppid calls), takes it
down and checks that no qemu and no lane directory is left, and that the session that used it
hears "not up" in one line. The other tests need no guest: the state a `lane up` leaves for a
guest it could not see to the end (killed mid-boot) is found and ended by `lane down`; AOT runs
over this machine's own sshd (ktrace-localhost) with exact counts, and falls back to bpftrace
with a warning where bpftrace --aot refuses the program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.lanes import up as kept
from harness.lanes.registry import get_lane

REPO = Path(__file__).resolve().parent.parent


def _cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 1500) -> Any:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _qemus(name: str) -> list[str]:
    """Processes whose command line names the guest (qemu runs with `-name ktrace-vm-S`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if name.encode() in argv and any(b"qemu" in a for a in argv[:1]):
                found.append(entry.name)
    return found


def _total(run_dir: Path, csv_name: str) -> int:
    import csv

    with (run_dir / csv_name).open() as fh:
        return sum(int(row["value"]) for row in csv.DictReader(fh))


@pytest.mark.vm
def test_lane_up_run_down(tmp_path: Path) -> None:
    from test_vm import vm_unavailable_reason

    reason = vm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    _cli("lane", "down", "vm:6.1")
    done = _cli("lane", "up", "vm:6.1")
    assert done.returncode == 0, done.stderr
    try:
        state = kept.read_state("6.1")
        assert state is not None and kept.condition(state) == "up"
        assert _qemus(kept.alias("6.1")), "qemu of the up guest is running"
        # A later CLI run finds the up guest and goes over SSH: no boot of its own.
        out = tmp_path / "ktrace"
        done = _cli("run", "ktrace", "--lane", "vm:6.1", "-q", "--out", str(out))
        assert done.returncode == 0, done.stderr
        meta = json.loads((out / "run.json").read_text())
        assert meta["lane"]["transport"] == "ssh (guest kept up)"
        assert meta["lane"]["release"].startswith("6.1.")
        sent = (out / "workload.stdout.txt").read_text()
        assert "sent 100 " in sent and _total(out, "stacks.csv") == 100
        # compiled here, its two struct casts as reads at the guest kernel's offsets (its BTF),
        # and served by the resident agent `lane up` started
        assert any(w.startswith("bpftrace --aot refuses struct casts: the program was compiled "
                                "with each cast member read at its offset") and
                   "sk_buff.hash at +" in w for w in meta["warnings"]), meta["warnings"]
        aot = meta["lane"]["aot"]
        assert aot["used"] and "struct" not in aot["program"] and "arg0 + " in aot["program"]
        assert meta["lane"]["agent"] == "resident", meta["lane"]
        # A Python session: the same guest, the syscalls entry compiled here (AOT).
        lane = get_lane("vm:6.1")
        assert isinstance(lane, kept.GuestLane)
        t = harness.trace("syscalls", lane=lane, out=False, report=False)
        assert int(t.frames["@calls"]["value"].sum()) == 100
        assert any(w.startswith("compiled ahead of time") for w in t.output.warnings)
    finally:
        done = _cli("lane", "down", "vm:6.1")
    assert done.returncode == 0 and "vm:6.1: down" in done.stdout, done.stderr
    assert not _qemus(kept.alias("6.1")), "no qemu of the guest is left"
    assert not kept.lane_dir("6.1").exists()
    # The session's lane now says, in one line, that the guest is not up.
    with pytest.raises(kept.NotUp) as err:
        harness.trace("syscalls", lane=lane, out=False, report=False)
    assert "vm:6.1 is not up" in str(err.value) and "\n" not in str(err.value)
    assert "lane up vm:6.1" in str(err.value)


@pytest.mark.vm
def test_a_guest_whose_nic_lost_its_address_is_reached(tmp_path: Path) -> None:
    """virtme-ng's DHCP can lose a race with udev renaming the NIC (CI: "enp0s10: renamed from
    eth0", no address, `lane up` hung 900 s at the ssh banner). The guest is booted with its
    address dropped as in that race: `lane up` still logs in, warns that it set the address by
    hand, and a run over the guest counts the workload's 100 getppid calls."""
    from test_vm import vm_unavailable_reason

    reason = vm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    _cli("lane", "down", "vm:6.1")
    done = _cli("lane", "up", "vm:6.1", env={"KTRACE_VM_DROP_ADDRESS": "1"})
    try:
        assert done.returncode == 0, done.stderr
        assert "warning: vm:6.1: the guest's NIC" in done.stderr, done.stderr
        assert "gave it 10.0.2.15/24 by hand (exit 0)" in done.stderr, done.stderr
        console = (kept.lane_dir("6.1") / "console.log").read_text(errors="replace")
        assert "ktrace lane: the guest's NIC" in console
        out = tmp_path / "syscalls"
        run = _cli("run", "syscalls", "--lane", "vm:6.1", "-q", "--out", str(out))
        assert run.returncode == 0, run.stderr
        assert _total(out, "calls.csv") == 100
        meta = json.loads((out / "run.json").read_text())
        assert any("10.0.2.15/24 by hand" in r for r in meta["lane"]["boot_repairs"])
    finally:
        _cli("lane", "down", "vm:6.1")
    assert not _qemus(kept.alias("6.1"))


# --- no guest needed ------------------------------------------------------------


def _record(series: str, **fields: Any) -> Path:
    d = kept.lane_dir(series)
    d.mkdir(parents=True)
    (d / "console.log").write_text("booting...\n")
    (d / "state.json").write_text(json.dumps({
        "lane": f"vm:{series}", "series": series, "state": "booting", "started": "t0",
        "dir": str(d), "ssh_config": str(d / "ssh_config"), **fields}))
    return d


def test_a_guest_whose_lane_up_died_is_found_and_ended(own_cache: Path) -> None:
    """`lane up` killed mid-boot leaves its state: status and doctor show it, `lane down` ends
    the whole group it names (a stand-in process group here) and removes the lane directory."""
    stand_in = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"], start_new_session=True)
    try:
        time.sleep(0.2)
        d = _record("6.1", pid=stand_in.pid, pgid=stand_in.pid,
                    start_ticks=kept._start_ticks(stand_in.pid))
        assert len(kept.group_members(stand_in.pid)) == 3  # sh and its two sleeps
        env = {"KTRACE_CACHE": str(own_cache)}
        status = _cli("lane", "status", env=env, timeout=60)
        assert "vm:6.1: booting" in status.stdout, status.stdout + status.stderr
        doctor = _cli("doctor", env=env, timeout=120)
        assert "vm kept up" in doctor.stdout and "vm:6.1 booting" in doctor.stdout, doctor.stdout
        with pytest.raises(harness.HarnessError, match="still booting"):
            get_lane("vm:6.1")
        down = _cli("lane", "down", env=env, timeout=60)
        assert down.returncode == 0 and "vm:6.1: down" in down.stdout, down.stderr
        stand_in.wait(10)
        assert kept.group_members(stand_in.pid) == [] and not d.exists()
    finally:
        if stand_in.poll() is None:
            os.killpg(stand_in.pid, 9)
            stand_in.wait()


def test_a_recorded_guest_that_is_gone_is_one_line(own_cache: Path, run_cli: Any) -> None:
    """A guest recorded as up whose qemu died (no `lane down`): a run names it and the fix,
    and `lane down` clears it; a recycled pid (other start time) is not taken for it."""
    _record("6.12", state="up", pid=os.getpid(), pgid=os.getpid(), start_ticks=1)
    with pytest.raises(kept.NotUp, match=r"vm:6\.12 was kept up but is gone.*lane down vm:6\.12"):
        get_lane("vm:6.12")
    said = run_cli("lane", "status", "vm:6.12")
    assert "vm:6.12: gone" in said.out
    said = run_cli("lane", "down", "vm:6.12")
    assert said.status == 0 and not kept.lane_dir("6.12").exists()
    said = run_cli("lane", "down", "vm:6.12")
    assert "vm:6.12: was not up" in said.out


@pytest.mark.parametrize(("argv", "says"), [
    (["lane", "up", "host"], "'host' is no guest lane"),
    (["lane", "status", "vm:9.99"], "no Debian kernel series '9.99'"),
    (["lane", "down", "ssh:box"], "'ssh:box' is no guest lane"),
    (["lane", "status", "--timeout", "5s"], "--timeout is for `lane up`"),
    (["lane", "down", "--json"], "--json is for `lane status`"),
])
def test_bad_lane_commands_are_one_line(run_cli: Any, argv: list[str], says: str) -> None:
    said = run_cli(*argv)
    assert said.status != 0 and says in said.error_line("lane")


# --- the library: harness.lane_up, lane_down, lane_status -------------------------


def test_lane_status_is_what_the_lane_directory_records(own_cache: Path, run_cli: Any) -> None:
    """Each Guest holds its state.json as written (read back here with json alone), with its
    condition from the process it names: a live stand-in is booting, a pid whose start time
    differs (recycled) is gone. `lane status --json` prints exactly these records."""
    stand_in = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        booting = _record("6.1", pid=stand_in.pid, pgid=stand_in.pid,
                          start_ticks=kept._start_ticks(stand_in.pid), release="6.1.0-x",
                          accel="tcg", port=2222)
        gone = _record("6.12", state="up", pid=os.getpid(), pgid=os.getpid(), start_ticks=1,
                       boot_s=41.5, warnings=["set the address by hand"])
        guests = harness.lane_status()
        assert [(g.lane, g.series, g.condition) for g in guests] == [
            ("vm:6.1", "6.1", "booting"), ("vm:6.12", "6.12", "gone")]
        for guest, d in zip(guests, (booting, gone), strict=True):
            recorded = json.loads((d / "state.json").read_text())
            assert dict(guest.record) == {**recorded, "condition": guest.condition,
                                          "dir": str(d)}
            assert (guest.release, guest.port, guest.pgid, guest.started) == (
                recorded.get("release"), recorded.get("port"), recorded["pgid"], "t0")
        assert guests[1].boot_s == 41.5 and guests[1].warnings == ("set the address by hand",)
        assert [g.lane for g in harness.lane_status("vm:6.12")] == ["vm:6.12"]
        assert harness.lane_status("vm") == [guests[0]]  # `vm` is 6.1
        said = run_cli("lane", "status", "--json")
        assert said.status == 0 and json.loads(said.out) == [dict(g.record) for g in guests]
    finally:
        stand_in.kill()
        stand_in.wait()


def test_lane_down_says_which_guests_it_stopped(own_cache: Path) -> None:
    assert harness.lane_down() == {} and harness.lane_status() == []
    assert harness.lane_down("vm:6.12") == {"vm:6.12": False}
    for series in ("6.1", "6.12"):
        _record(series, pid=0, pgid=0)
    assert harness.lane_down() == {"vm:6.1": True, "vm:6.12": True}
    assert not kept.lane_dir("6.1").exists() and not kept.lane_dir("6.12").exists()
    assert harness.lane_status() == [] and harness.lane_down("vm:6.1") == {"vm:6.1": False}


@pytest.mark.parametrize(("call", "keywords", "says"), [
    ("lane_up", {"lane": "host"}, "'host' is no guest lane"),
    ("lane_up", {"lane": ""}, "the lane is empty"),
    ("lane_up", {"lane": 6.1}, "lane=6.1 is not a string"),
    ("lane_up", {"lane": "vm:6.1", "timeout": "5s"}, "timeout='5s'"),
    ("lane_up", {"lane": "vm:6.1", "progress": "print"}, "progress='print'"),
    ("lane_status", {"lane": "vm:9.99"}, "no Debian kernel series '9.99'"),
    ("lane_down", {"lane": "ssh:box"}, "'ssh:box' is no guest lane"),
])
def test_a_bad_lane_is_one_usage_error_before_anything_boots(
        own_cache: Path, call: str, keywords: dict[str, Any], says: str) -> None:
    with pytest.raises(harness.UsageError) as refused:
        getattr(harness, call)(**keywords)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert not own_cache.exists()  # nothing fetched, booted or recorded


# --- AOT over this machine's sshd --------------------------------------------------


@pytest.mark.kernel
def test_aot_over_ssh_counts_exactly(local_ssh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The syscalls entry compiled here runs with bpftrace-aotrt over ssh: exact counts (the
    workload makes 100 getppid calls), the maps printed at the harness's stop (aotrt dies on
    SIGINT: the stop probe ends it), one warning that says so. A program bpftrace --aot refuses
    (a struct cast) runs with bpftrace there, with the refusal as a warning, counts exact too."""
    monkeypatch.setenv("KTRACE_AOT", "1")  # ssh hosts: on request; guests kept up: by default
    t = harness.trace("syscalls", lane="ssh:ktrace-localhost", out=False, report=False)
    assert int(t.frames["@calls"]["value"].sum()) == 100
    notes = [w for w in t.output.warnings if "ahead of time" in w]
    assert len(notes) == 1 and notes[0].startswith("compiled ahead of time"), notes
    assert t.meta.probes == 3  # BEGIN, the tracepoint, the stop probe
    t = harness.trace("ktrace", lane="ssh:ktrace-localhost", out=False, report=False)
    assert int(t.frames["@stacks"]["value"].sum()) == 100
    assert any(w.startswith("not compiled ahead of time (AOT does not yet support struct casts)")
               for w in t.output.warnings), t.output.warnings


@pytest.mark.kernel
def test_a_later_run_over_ssh_fills_in_the_program_compiled_before(
        local_ssh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first run compiles and leaves a proven template (harness.lanes.aot_reuse); the next
    one, with its own pid and marker, fills it in instead of compiling: both count exactly
    the workload's 100 getppid calls, and the second one's warning says it was filled in."""
    from harness.lanes import aot_reuse

    monkeypatch.setenv("KTRACE_AOT", "1")
    monkeypatch.delenv("KTRACE_AOT_REUSE", raising=False)
    monkeypatch.setattr(aot_reuse, "store_dir", lambda: tmp_path)
    reuse = []
    for _ in range(2):
        t = harness.trace("syscalls", lane="ssh:ktrace-localhost", out=False, report=False)
        assert int(t.frames["@calls"]["value"].sum()) == 100
        reuse.append(t.meta.lane["aot"]["reuse"])
    assert reuse == ["made", "filled"], reuse
    assert any(w.startswith("compiled ahead of time") and "filled into the same program" in w
               for w in t.output.warnings), t.output.warnings


@pytest.mark.kernel
def test_a_remote_run_ticks_once_its_program_is_handed_over(local_ssh: None) -> None:
    """A run elsewhere sends no progress ticks: on_progress gets one, 0, when the program goes
    to the machine (what the caller loads on its first tick, and the output parser, load while
    the machine starts bpftrace), and the run counts exactly."""
    ticks: list[float] = []
    t = harness.trace("syscalls", lane="ssh:ktrace-localhost", out=False, report=False,
                      on_progress=ticks.append)
    assert int(t.frames["@calls"]["value"].sum()) == 100
    assert ticks == [0.0]


@pytest.fixture(scope="module")
def local_ssh() -> None:
    from test_ssh import ssh_unavailable_reason

    reason = ssh_unavailable_reason()
    if reason:
        pytest.skip(reason)


# --- struct casts compiled ahead of time: the remote kernel's offsets ------------------------

FIELDS = [("sk_buff", "hash"), ("sk_buff", "len"), ("sk_buff", "protocol"), ("sk_buff", "data"),
          ("task_struct", "pid"), ("task_struct", "tgid"), ("sock_common", "skc_family"),
          ("file", "f_flags"), ("inode", "i_ino")]


@pytest.mark.kernel
def test_btf_fields_are_where_clang_lays_them_out(tmp_path: Path) -> None:
    """harness.lanes.btf reads this kernel's BTF; clang, compiling vmlinux.h (bpftool's C dump
    of the same BTF), must agree on every offset, size and signedness: a static assertion per
    member, compiled for the BPF target as the twin is."""
    from harness.lanes.btf import Btf
    from harness.twin.build import vmlinux_header

    btf = Btf(Path("/sys/kernel/btf/vmlinux").read_bytes())
    lines = [f'#include "{vmlinux_header()}"']
    for struct_name, member in FIELDS:
        f = btf.field(struct_name, member)
        assert f is not None, (struct_name, member)
        where = f"struct {struct_name}"
        lines.append(f"_Static_assert(__builtin_offsetof({where}, {member}) == {f.offset}, "
                     f'"{struct_name}.{member} offset");')
        lines.append(f"_Static_assert(sizeof((({where} *)0)->{member}) == {f.size}, "
                     f'"{struct_name}.{member} size");')
        if f.kind == "int":
            lines.append(f"_Static_assert(((__typeof__((({where} *)0)->{member}))-1 < 0) == "
                         f'{int(f.signed)}, "{struct_name}.{member} sign");')
    src = tmp_path / "fields.c"
    src.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["clang", "-target", "bpf", "-fsyntax-only", str(src)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # what is no whole-byte scalar member is None: a bitfield, a macro, a struct, a missing one
    assert btf.field("sk_buff", "pkt_type") is None  # a bitfield
    assert btf.field("sock", "sk_state") is None  # a #define for __sk_common.skc_state
    assert btf.field("sk_buff", "cb") is None  # an array
    assert btf.field("no_such_struct", "x") is None


@pytest.mark.kernel
def test_member_layouts_are_kept_beside_the_remote_btf(local_ssh: None,
                                                     own_cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote's member layouts (what a portable program reads) are this kernel's BTF's, read
    through the remote (its BTF sent over; own_cache: none kept from an earlier run); kept, a
    later lane answers them without indexing the BTF again (0.15-0.3 s of each run)."""
    from harness.lanes.btf import Btf
    from harness.lanes.remote import RemoteLane

    here = Btf(Path("/sys/kernel/btf/vmlinux").read_bytes())
    lane = get_lane("ssh:ktrace-localhost")
    assert isinstance(lane, RemoteLane)
    wanted = [*FIELDS, ("no_such_struct", "x"), ("sk_buff", "pkt_type")]
    for struct_name, member in wanted:
        assert lane.member_layout(struct_name, member) == here.field(struct_name, member)

    class Refuses:
        def field(self, struct_name: str, member: str) -> None:
            raise AssertionError("the BTF was indexed again")

    monkeypatch.setattr(lane, "_btf", Refuses())  # the lane is the process's: put back after
    for struct_name, member in wanted:
        assert lane.member_layout(struct_name, member) == here.field(struct_name, member)


@pytest.mark.kernel
def test_casts_of_arguments_are_compiled_without_casts() -> None:
    """ktrace's kprobe program has two casts bpftrace --aot refuses; written by codegen as reads
    at this kernel's offsets (the same field, as BTF says), bpftrace --aot compiles it here. A
    member that is a pointer or absent is said, and no program is given."""
    from dataclasses import replace

    from harness.lanes.aot import compile_program
    from harness.lanes.btf import Btf
    from harness.spec.plan import Programs

    btf = Btf(Path("/sys/kernel/btf/vmlinux").read_bytes())
    plan = harness.plan("ktrace", attach="kprobe")
    program = plan.program(4242)
    marker = plan.marker
    assert "struct casts" in compile_program(program, marker).refused
    text, said = Programs(plan).portable(4242, btf.field)
    hash_at, len_at = btf.field("sk_buff", "hash"), btf.field("sk_buff", "len")
    assert hash_at is not None and len_at is not None
    assert text is not None and "struct" not in text
    assert f"@hash[(*(arg0 + {hash_at.offset}) & 0xffffffff)] = count();" in text
    assert f"@len = hist((*(arg0 + {len_at.offset}) & 0xffffffff));" in text
    assert said == (f"sk_buff.hash at +{hash_at.offset} (4 bytes), "
                    f"sk_buff.len at +{len_at.offset} (4 bytes)")
    compiled = compile_program(text, marker)
    assert compiled.data and not compiled.refused
    assert plan.spec is not None
    for member, why in (("sk", "a pointer"), ("nope", "not in its BTF")):
        aggs = tuple(replace(a, value=a.value.replace("hash", member)) if a.value else a
                     for a in plan.spec.aggs)
        other = replace(plan, spec=replace(plan.spec, aggs=aggs))
        text, said = Programs(other).portable(4242, btf.field)
        assert text is None and said == f"sk_buff.{member} is {why}"


# --- the resident agent ---------------------------------------------------------------------


@pytest.mark.kernel
def test_a_resident_agent_serves_runs_and_leaves_nothing(local_ssh: None) -> None:
    """An agent kept running on a host (as `lane up` starts one in its guest) serves each
    session in a fork reached through `ssh -W`: exact counts, the lane says it reached the
    resident; a session's processes end with its connection; a wrong secret is not served
    (the lane starts an agent of its own and still counts exactly)."""
    import secrets
    import signal

    from test_ssh import remote_scan

    from harness.lanes.remote import SSHLane

    starter = SSHLane("ktrace-localhost")
    token = secrets.token_hex(16)
    answer = starter.request({"op": "resident", "token": token})
    starter.close()
    loop = ["python3", "-m", "harness.workloads.syscall_loop", "--count", "300"]
    try:
        for secret, agent in ((token, "resident"), ("wrong", "started")):
            lane = SSHLane("ktrace-localhost")
            lane.resident = (int(answer["port"]), secret)
            t = harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="comm",
                              workload_pid=True, workload=loop, lane=lane, out=False,
                              report=False)
            assert int(t.frames["@count"]["value"].sum()) == 300
            assert t.meta.lane["agent"] == agent, t.meta.lane
            assert remote_scan("ktrace-localhost", lane.session)["procs"], "the session runs"
            lane.close()
            deadline = time.monotonic() + 20
            while remote_scan("ktrace-localhost", lane.session)["procs"]:
                assert time.monotonic() < deadline, "the session's agent outlived its connection"
                time.sleep(0.2)
    finally:
        os.kill(int(answer["pid"]), signal.SIGTERM)


def test_only_the_shipped_workloads_start_python_without_site() -> None:
    from harness.lanes.agent import PACKAGE, PYTHON, _shipped_workload

    assert _shipped_workload([f"{PACKAGE}/workloads/udp_send.py", "--count", "3"])
    assert _shipped_workload(["-m", "harness.workloads.syscall_loop"])
    assert not _shipped_workload(["-m", "mymodule"])
    assert not _shipped_workload(["/home/me/script.py"])
    assert not _shipped_workload([])
    assert PYTHON != PACKAGE


@pytest.mark.parametrize("argv", [
    [], ["--no-wait"], ["--count", "7", "--sizes", "1,100", "--no-wait"],
    ["--count=3", "--sockets=4", "--sizes=5"], ["--sockets", "1", "--count", "0"],
])
def test_udp_send_reads_its_options_as_argparse_does(argv: list[str]) -> None:
    """The quick reading (no argparse import: 0.5 s of a TCG guest's run) gives argparse's
    answer for every argv it takes; argv it does not take go to argparse."""
    from harness.workloads.udp_send import full_args, quick_args

    assert quick_args(argv) == full_args(argv)


@pytest.mark.parametrize("argv", [["--count", "x"], ["--count"], ["--bogus"], ["-h"],
                                  ["--count", "-1"]])
def test_udp_send_leaves_what_it_cannot_read_to_argparse(argv: list[str]) -> None:
    from harness.workloads.udp_send import quick_args

    assert quick_args(argv) is None


def test_the_lane_line_says_whether_the_guest_was_kept_up(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """With no guest up, --lane vm:S boots one for the run: its lane line says so and how to
    keep one up; a guest kept up is named as such, not as booted for the run."""
    from harness.cli.run import print_lane

    print_lane({"name": "vm:6.1", "release": "6.1.0-50-amd64", "accel": "tcg", "boot_s": 41.5})
    print_lane({"name": "vm:6.1", "release": "6.1.0-50-amd64", "accel": "tcg", "boot_s": 28.0,
                "series": "6.1", "up_since": "2026-12-04T14:17:14+00:00", "connect_s": 0.3,
                "transport": "ssh (guest kept up)"})
    cold, up = capsys.readouterr().out.splitlines()
    assert cold == ("lane: vm:6.1 6.1.0-50-amd64 (tcg, booted in 41.5s for this run: no guest "
                    "was up; `harness lane up vm:6.1` keeps one up for later runs)")
    assert up == ("lane: vm:6.1 6.1.0-50-amd64 (tcg, kept up since 2026-12-04T14:17:14+00:00, "
                  "connected in 0.3s)")
