"""`harness run profile` and `harness run offcpu`: the catalog's two flame graphs, their programs
(checked by bpftrace itself on both releases) and their filters."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.errors import UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.runner import classify
from harness.spec import catalog, codegen
from harness.spec.model import Agg, Probe, ProbeSpec

PROFILE_WORKLOAD = """BEGIN { printf("MK\\n"); }
profile:hz:99 /pid == 42/
{
  @profile[comm, ustack, kstack] = count();
}
"""

OFFCPU_EVERY_CPU = """BEGIN { printf("MK\\n"); }
tracepoint:sched:sched_switch /tid != 0/
{
  @_offcpu_start[tid] = nsecs;
  @_offcpu_key0[tid] = comm;
  @_offcpu_key1[tid] = ustack;
  @_offcpu_key2[tid] = kstack;
}
tracepoint:sched:sched_switch /@_offcpu_start[args->next_pid]/
{
  $offcpu_us = (uint64)((int64)nsecs - (int64)@_offcpu_start[args->next_pid]) / 1000;
  @offcpu[@_offcpu_key0[args->next_pid], @_offcpu_key1[args->next_pid], \
@_offcpu_key2[args->next_pid]] = sum($offcpu_us);
  delete(@_offcpu_start[args->next_pid]);
  delete(@_offcpu_key0[args->next_pid]);
  delete(@_offcpu_key1[args->next_pid]);
  delete(@_offcpu_key2[args->next_pid]);
}
END {
  clear(@_offcpu_start);
  clear(@_offcpu_key0);
  clear(@_offcpu_key1);
  clear(@_offcpu_key2);
}
""".replace("\\\n", "")


def test_profile_samples_the_workloads_stacks_at_the_rate_given() -> None:
    spec = catalog.get("profile").equivalents["profile"]
    assert codegen.generate(spec, "profile", (0, 17, 0), "MK", pid=42) == PROFILE_WORKLOAD
    assert spec.key_names() == {"@profile": ["comm", "ustack", "kstack"]}
    fast = catalog.get("profile", hz=999).equivalents["profile"]
    assert "profile:hz:999 /pid == 42/" in codegen.generate(fast, None, (0, 27, 0), "MK", pid=42)
    with pytest.raises(UsageError, match="bad -F 0"):
        catalog.get("profile", hz=0)
    with pytest.raises(UsageError, match="samples with `profile`, not offcpu"):
        catalog.get("offcpu", hz=99)


def test_offcpu_keeps_the_leaving_threads_keys_until_it_comes_back() -> None:
    spec = catalog.get("offcpu").equivalents["tracepoint"]
    every_cpu = dataclasses.replace(spec, workload_pid=False)
    assert codegen.generate(every_cpu, None, (0, 17, 0), "MK") == OFFCPU_EVERY_CPU
    newer = codegen.generate(spec, None, (0, 27, 0), "MK", pid=7)
    assert "tracepoint:sched:sched_switch /pid == 7 && tid != 0/" in newer
    assert "(int64)@_offcpu_start[args.next_pid]) / 1000;" in newer
    assert "  if (delete(@_offcpu_key2[args.next_pid])) {}" in newer  # 0.24+ warns otherwise
    assert spec.key_names() == {"@offcpu": ["comm", "ustack", "kstack"]}


def test_an_offcpu_spec_reads_offcpu_us_in_values_only() -> None:
    sched = Probe("tracepoint", "sched:sched_switch")
    with pytest.raises(UsageError, match="an off-CPU spec traces tracepoint:sched:sched_switch"):
        ProbeSpec(Probe("tracepoint", "sched:sched_wakeup"),
                  (Agg("@x", "sum", value="offcpu_us"),), offcpu=True)
    with pytest.raises(UsageError, match="may read only offcpu_us, not comm"):
        ProbeSpec(sched, (Agg("@x", "sum", value="comm"),), offcpu=True)
    with pytest.raises(UsageError, match="unknown name 'offcpu_us'"):
        ProbeSpec(sched, (Agg("@x", "count", keys=("offcpu_us",)),), offcpu=True)
    with pytest.raises(UsageError, match="unknown name 'offcpu_us'"):
        ProbeSpec(sched, (Agg("@x", "sum", value="offcpu_us"),))  # not an off-CPU spec
    hist = ProbeSpec(sched, (Agg("@h", "hist", value="offcpu_us / 1000", keys=("comm",)),),
                     offcpu=True)
    assert "@h[@_offcpu_key0[args->next_pid]] = hist($offcpu_us / 1000);" in \
        codegen.generate(hist, None, (0, 17, 0), "MK")


def test_catalog_entries_take_filters_and_watch_every_cpu_without_a_workload() -> None:
    def program(target: str, **kw: object) -> str:
        return harness.plan(target, twin=False, **kw).shown()  # type: ignore[arg-type]

    assert "profile:hz:99 /pid == WORKLOAD_PID/" in program("profile", workload="true")
    assert "profile:hz:49\n" in program("profile", duration=1, frequency=49)
    assert "profile:hz:99 /pid == 1/" in program("profile", duration=1, pid=1)
    assert "profile:hz:99 /pid == 1/" in program("profile", workload="true", pid=1)
    assert 'sched_switch /comm == "sshd" && tid != 0/' in program("offcpu", duration=1, comm="sshd")
    with pytest.raises(UsageError, match=r"spec options \(count_by\) do not apply"):
        program("profile", duration=1, count_by="kstack")
    with pytest.raises(UsageError, match="nothing bounds this run"):
        program("profile", pid=1)
    with pytest.raises(UsageError, match="-F/--frequency sets the `profile` entry's rate"):
        program("profile:hz:99", duration=1, frequency=49)


def test_cli_profile_dry_run_and_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "profile", "-F", "199", "-p", "1", "-d", "1s", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "attach: profile (profile works on this kernel)" in out
    assert "profile:hz:199 /pid == 1/" in out and "no libbpf twin: the probe type profile" in out
    assert main(["run", "offcpu", "-F", "9", "-d", "1s"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "samples with `profile`, not offcpu" in err


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", ["system", "0.27"])
@pytest.mark.parametrize("target", ["profile", "offcpu"])
def test_bpftrace_compiles_both_programs_without_a_warning(
    target: str, release: str, tmp_path: Path
) -> None:
    """Each release's own dry run type-checks the program as it would run (a pid filter
    included) and prints no warning: newer releases warn about implicit casts and dropped
    results, which the off-CPU program avoids."""
    tracer = resolve(None if release == "system" else release)
    spec = next(iter(catalog.get(target).equivalents.values()))
    text = codegen.generate(spec, None, tracer.version, "MK", pid=1)
    # 0.17 has no --dry-run; the newer release writes no ELF where the host can see it (chroot).
    check = ["--dry-run"] if tracer.version >= (0, 20, 0) else ["--emit-elf", str(tmp_path / "e")]
    done = subprocess.run([*tracer.command.split(), *check, "-e", text],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and classify(done.stderr, text) is None, done.stderr
    assert tracer.version >= (0, 20, 0) or (tmp_path / "e").stat().st_size > 0
    warnings = [ln for ln in done.stderr.splitlines() if "WARNING" in ln
                and not re.search("RLIMIT_MEMLOCK|available_filter_functions", ln)]
    assert warnings == [], done.stderr

