"""How sure a benchmark is: bootstrap confidence intervals, a stopping rule, a verdict.

Rounds are interleaved (every mode once per round, the order rotating), so a round's figures
were taken under one machine state: the ratio of two tracers is bootstrapped PAIRED, by
resampling whole rounds, and its statistic is the ratio of the two medians (medians shrug off
the round that another process's burst spoiled). Intervals are scipy's percentile bootstrap,
seeded so the same rounds always give the same report. Not BCa: its jackknife acceleration is
unstable for a median of few rounds (one outlier among seven rounds pushed the upper bound of
the median onto the outlier itself).

The in-kernel headline compares the two tracers attached at once, in one run per round (modes
`both:bpftrace`, `both:libbpf`): each event runs both programs back to back, so both pay the same
cache, interrupts and neighbours, and their ratio repeats where the ratio of two separate runs
does not (measured here on a loaded 2-core machine: per-round ratios of separate runs spread
1.49x-2.27x, of one run with both attached 1.88x-2.08x). The separate runs still give each
tracer's own figures, the floor and the end-to-end overhead.

A comparison is "conclusive" when its 95% interval's half-width is within `max_noise` of the
ratio; otherwise its verdict says "inconclusive" with the noise, never a bare number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
RESAMPLES = 4999
SEED = 20
MAX_NOISE = 0.10  # a verdict is inconclusive past +-10%
PRECISION = 0.02  # adaptive rounds stop once the headline ratio is known to +-2%


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% bootstrap interval (lo, hi; NaN when it could not be made)."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def noise(self) -> float:
        """The interval's half-width relative to the value (inf when unknown)."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.value == 0:
            return math.inf
        return (self.hi - self.lo) / 2 / abs(self.value)

    def text(self, unit: str = "", digits: int = 1) -> str:
        """`95.2 (91.0-99.1)`, the unit after each number."""
        if not math.isfinite(self.lo):
            return f"{self.value:.{digits}f}{unit} (no interval: {self.n} round(s))"
        return (
            f"{self.value:.{digits}f}{unit} "
            f"({self.lo:.{digits}f}{unit}-{self.hi:.{digits}f}{unit})"
        )


def _bootstrap(data: tuple[Any, ...], statistic: Callable[..., Any], paired: bool) -> Estimate:
    import numpy as np
    from scipy.stats import bootstrap

    arrays = tuple(np.asarray(d, dtype=float) for d in data)
    value = float(statistic(*arrays, axis=-1))
    n = len(arrays[0])
    if n < 2 or not math.isfinite(value):
        return Estimate(value, math.nan, math.nan, n)
    if all(np.all(a == a[0]) for a in arrays):
        return Estimate(value, value, value, n)  # no spread at all: the interval is the point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few distinct values: the interval is still what it is
        ci = bootstrap(
            arrays, statistic, n_resamples=RESAMPLES, vectorized=True, paired=paired,
            confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(SEED),
        ).confidence_interval
    return Estimate(value, float(ci.low), float(ci.high), n)


def _median(x: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.median(x, axis=axis)


def _median_ratio(x: Any, y: Any, axis: int = -1) -> Any:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(x, axis=axis) / np.median(y, axis=axis)


def median_ci(values: Sequence[float]) -> Estimate:
    """The median of `values` with its 95% bootstrap interval."""
    return _bootstrap((list(values),), _median, paired=False)


def ratio_ci(pairs: Sequence[tuple[float, float]]) -> Estimate:
    """median(a) / median(b) over rounds of (a, b) pairs, rounds resampled as wholes."""
    return _bootstrap(([a for a, _ in pairs], [b for _, b in pairs]), _median_ratio, paired=True)


@dataclass(frozen=True)
class Comparison:
    """One tracer against another on one metric: the ratio, its interval, the verdict."""

    metric: str  # a Sample field: kernel_ns_per_event, overhead_ns_per_event
    what: str  # "in the kernel", "end to end"
    a: str
    b: str
    ratio: Estimate
    max_noise: float = MAX_NOISE

    @property
    def conclusive(self) -> bool:
        return self.ratio.noise <= self.max_noise

    @property
    def verdict(self) -> str:
        """`bpftrace costs 1.23x (1.20x-1.26x) of the twin in the kernel, per event` or
        `inconclusive: noise +-14% ...`."""
        r = self.ratio
        a, b = _shown(self.a), _shown(self.b)
        b = "the twin" if b == "libbpf" else b
        rounds = f"95% CI, {r.n} rounds"
        if self.conclusive:
            return (
                f"{a} costs {r.value:.2f}x ({r.lo:.2f}x-{r.hi:.2f}x, {rounds}) of {b} "
                f"{self.what}, per event"
            )
        noise = "unknown" if math.isinf(r.noise) else f"+-{r.noise * 100:.0f}%"
        interval = f"{r.lo:.2f}x-{r.hi:.2f}x" if math.isfinite(r.lo) else "no interval"
        return (
            f"inconclusive: noise {noise} ({a}/{b} {self.what} {r.value:.2f}x, "
            f"{interval}, {rounds})"
        )


METRICS = {
    "program_ns_per_event": "in the kernel above the floor",
    "kernel_ns_per_event": "in the kernel",
    "overhead_ns_per_event": "end to end",
}
TOGETHER = "both:"  # mode prefix of a tracer's figures from the run with both tracers attached
# (metric, a, b, what): the comparisons a bench reports, the headline first.
COMPARISONS = (
    ("program_ns_per_event", TOGETHER + "bpftrace", TOGETHER + "libbpf",
     "in the kernel above the floor, on the same events (floor, bpftrace and the twin attached "
     "in one run)"),
    ("kernel_ns_per_event", TOGETHER + "bpftrace", TOGETHER + "libbpf",
     "in the kernel, on the same events (both attached in one run)"),
    ("kernel_ns_per_event", "bpftrace", "libbpf", "in the kernel, each in runs of its own"),
    ("overhead_ns_per_event", "bpftrace", "libbpf", "end to end"),
)


def _shown(mode: str) -> str:
    return mode.removeprefix(TOGETHER)


def paired(rows: Sequence[Any], metric: str, a: str, b: str) -> list[tuple[float, float]]:
    """(a's value, b's value) per round where both have a finite, positive `metric`."""
    by_round: dict[int, dict[str, float]] = {}
    for s in rows:
        v = getattr(s, metric)
        if v is not None and math.isfinite(v):
            by_round.setdefault(s.round, {})[s.mode] = v
    return [
        (r[a], r[b]) for _, r in sorted(by_round.items()) if a in r and b in r and r[b] > 0
    ]


def compare(
    samples: Sequence[Any], metric: str, a: str = "bpftrace", b: str = "libbpf",
    max_noise: float = MAX_NOISE, what: str | None = None,
) -> Comparison | None:
    """`a` against `b` on `metric` over the samples' rounds; None when a side is missing."""
    pairs = paired(samples, metric, a, b)
    if not pairs:
        return None
    named = {(m, x, y): w for m, x, y, w in COMPARISONS}
    what = what or named.get((metric, a, b)) or METRICS.get(metric, metric)
    return Comparison(metric, what, a, b, ratio_ci(pairs), max_noise)


def comparisons(samples: Sequence[Any]) -> list[Comparison]:
    """Every comparison of COMPARISONS the samples allow, the headline first."""
    found = [compare(samples, metric, a, b, what=what) for metric, a, b, what in COMPARISONS]
    return [c for c in found if c is not None]


def headline(samples: Sequence[Any]) -> Comparison | None:
    """The comparison adaptive rounds wait for: in the kernel on the same events when both
    tracers ran attached together, else in the kernel in separate runs, else end to end."""
    return next(iter(comparisons(samples)), None)


def narrow_enough(samples: Sequence[Any], precision: float = PRECISION) -> bool:
    """Whether the headline ratio's interval is within +-`precision`: more rounds would not
    change what the report says. True when there is nothing to compare."""
    found = headline(samples)
    return found is None or found.ratio.noise <= precision
