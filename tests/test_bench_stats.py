"""harness.compare.stats: intervals, verdicts and the stopping rule, on rounds whose truth is
known (drawn here from a seeded generator), so each assertion could fail."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics

from harness.compare import stats
from harness.compare.bench import Sample


def rounds(ratio: float, noise: float, n: int, seed: int = 1) -> list[Sample]:
    """n rounds of bpftrace and libbpf in-kernel figures: libbpf ~100 ns/event, bpftrace
    `ratio` times that, each with multiplicative noise of about +-`noise`."""
    rng = random.Random(seed)
    out = []
    for r in range(n):
        for mode, base in (("libbpf", 100.0), ("bpftrace", 100.0 * ratio)):
            value = base * (1 + rng.uniform(-noise, noise))
            out.append(_sample(r, mode, kernel=value, overhead=value * 3))
    return out


def _sample(r: int, mode: str, kernel: float, overhead: float) -> Sample:
    from harness.host.bpfstats import ProgramRun

    events = 1_000
    s = Sample(r, mode, events, events, 1, overhead_ns_per_event=overhead)
    s.programs = [ProgramRun(1, "p", "", "tracepoint", round(kernel * events), events)]
    return s


def test_a_clear_ratio_gets_a_verdict_with_its_interval() -> None:
    found = stats.compare(rounds(1.5, 0.02, 12), "kernel_ns_per_event")
    assert found is not None and found.conclusive
    r = found.ratio
    assert r.lo <= 1.5 <= r.hi and r.hi - r.lo < 0.1 and r.n == 12
    assert found.verdict.startswith(f"bpftrace costs {r.value:.2f}x ({r.lo:.2f}x-{r.hi:.2f}x")
    assert "of the twin in the kernel, each in runs of its own, per event" in found.verdict


def test_the_headline_is_both_tracers_on_the_same_events() -> None:
    """With a run where both tracers were attached at once, the in-kernel headline (and the
    stopping rule) reads it; its verdict names the tracers, not the modes."""
    apart = rounds(1.5, 0.3, 8)  # separate runs: noisy
    together = [dataclasses.replace(s, mode="both:" + s.mode) for s in rounds(2.0, 0.01, 8, 2)]
    found = stats.comparisons(apart + together)
    assert [(c.a, c.metric) for c in found] == [
        ("both:bpftrace", "kernel_ns_per_event"), ("bpftrace", "kernel_ns_per_event"),
        ("bpftrace", "overhead_ns_per_event"),
    ]
    headline = stats.headline(apart + together)
    assert headline is found[0] or headline == found[0]
    assert headline is not None and headline.ratio.lo <= 2.0 <= headline.ratio.hi
    assert headline.verdict.startswith(f"bpftrace costs {headline.ratio.value:.2f}x (")
    assert "of the twin in the kernel, on the same events (both attached in one run)" in (
        headline.verdict)
    assert stats.narrow_enough(apart + together, precision=0.02)
    assert not stats.narrow_enough(apart, precision=0.02)


def test_noise_makes_it_inconclusive_and_says_how_much() -> None:
    found = stats.compare(rounds(1.1, 0.6, 6), "kernel_ns_per_event")
    assert found is not None and not found.conclusive
    assert found.ratio.noise > stats.MAX_NOISE
    assert found.verdict.startswith(f"inconclusive: noise +-{found.ratio.noise * 100:.0f}%")


def test_one_round_has_no_interval() -> None:
    found = stats.compare(rounds(2.0, 0.0, 1), "kernel_ns_per_event")
    assert found is not None and not found.conclusive
    assert math.isnan(found.ratio.lo) and found.ratio.value == 2.0
    assert found.verdict.startswith("inconclusive: noise unknown")


def test_identical_rounds_give_a_point_interval() -> None:
    est = stats.median_ci([7.0, 7.0, 7.0])
    assert (est.value, est.lo, est.hi, est.noise) == (7.0, 7.0, 7.0, 0.0)


def test_intervals_repeat_for_the_same_rounds() -> None:
    """Seeded: the same samples always give the same report (a re-rendered .md is stable)."""
    a = stats.compare(rounds(1.3, 0.1, 8), "overhead_ns_per_event")
    b = stats.compare(rounds(1.3, 0.1, 8), "overhead_ns_per_event")
    assert a is not None and a == b and a.what == "end to end"


def test_the_median_interval_holds_the_median() -> None:
    values = [float(v) for v in (10, 12, 11, 13, 50, 12, 11)]
    est = stats.median_ci(values)
    assert est.value == 12.0 and est.lo <= 12.0 <= est.hi and est.hi < 50


def test_more_rounds_narrow_the_interval() -> None:
    few = stats.compare(rounds(1.2, 0.1, 5), "kernel_ns_per_event")
    many = stats.compare(rounds(1.2, 0.1, 40), "kernel_ns_per_event")
    assert few is not None and many is not None
    assert many.ratio.noise < few.ratio.noise


def test_stopping_rule_follows_the_headline() -> None:
    tight = rounds(1.5, 0.005, 8)
    assert stats.narrow_enough(tight, precision=0.02)
    assert not stats.narrow_enough(rounds(1.5, 0.3, 8), precision=0.02)
    # without the kernel's clock the headline is the end-to-end ratio
    no_kernel = [Sample(s.round, s.mode, 10, 10, 1, overhead_ns_per_event=s.overhead_ns_per_event)
                 for s in tight]
    headline = stats.headline(no_kernel)
    assert headline is not None and headline.metric == "overhead_ns_per_event"
    # nothing to compare (one tracer only): nothing to wait for
    assert stats.narrow_enough([s for s in tight if s.mode == "bpftrace"], precision=1e-9)


def test_rounds_missing_a_side_are_left_out_of_the_pairs() -> None:
    samples = rounds(1.0, 0.0, 3)
    samples = [s for s in samples if not (s.round == 1 and s.mode == "libbpf")]
    assert [p for p in stats.paired(samples, "kernel_ns_per_event", "bpftrace", "libbpf")] == [
        (100.0, 100.0), (100.0, 100.0)
    ]


def test_summary_reads_each_tracer_as_floor_plus_program() -> None:
    from harness.compare.bench import BenchResult, Workload, summary_markdown

    samples = rounds(1.5, 0.01, 6)
    for r in range(6):
        samples.append(_sample(r, "floor", kernel=40.0, overhead=20.0))
    samples[0].programs[0] = dataclasses.replace(samples[0].programs[0], run_cnt=1_500)
    md = summary_markdown(
        BenchResult("unit", Workload(["x"], 1_000, "x"), "tracepoint", samples, {}, "t")
    )
    verdicts = [line for line in md.splitlines() if line.startswith("- bpftrace costs")]
    assert len(verdicts) == 2  # in the kernel and end to end, both clear at +-1%
    kernel = stats.compare(samples, "kernel_ns_per_event")
    assert kernel is not None and f"- {kernel.verdict}." in md
    median_b = statistics.median(s.kernel_ns_per_event or 0 for s in samples
                                 if s.mode == "bpftrace")
    assert f"- bpftrace: in the kernel {median_b:.1f} = floor 40.0 + program " \
        f"{median_b - 40:.1f} ns/event" in md
    # round 0's libbpf program ran 1.5 times per event: said, not hidden
    assert "- libbpf: in 1 round(s) its programs ran up to 1.50 times per workload event" in md
