"""How sure a benchmark is: bootstrap confidence intervals, a stopping rule, a verdict.

Rounds are interleaved (every mode once per round, the order rotating), so a round's figures
were taken under one machine state: the ratio of two tracers is bootstrapped PAIRED, by
resampling whole rounds, and its statistic is the ratio of the two medians (medians shrug off
the round that another process's burst spoiled). Intervals are scipy's percentile bootstrap,
seeded so the same rounds always give the same report. Not BCa: its jackknife acceleration is
unstable for a median of few rounds (one outlier among seven rounds pushed the upper bound of
the median onto the outlier itself).

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
        b = "the twin" if self.b == "libbpf" else self.b
        rounds = f"95% CI, {r.n} rounds"
        if self.conclusive:
            return (
                f"{self.a} costs {r.value:.2f}x ({r.lo:.2f}x-{r.hi:.2f}x, {rounds}) of {b} "
                f"{self.what}, per event"
            )
        noise = "unknown" if math.isinf(r.noise) else f"+-{r.noise * 100:.0f}%"
        interval = f"{r.lo:.2f}x-{r.hi:.2f}x" if math.isfinite(r.lo) else "no interval"
        return (
            f"inconclusive: noise {noise} ({self.a}/{b} {self.what} {r.value:.2f}x, "
            f"{interval}, {rounds})"
        )


METRICS = {
    "kernel_ns_per_event": "in the kernel",
    "overhead_ns_per_event": "end to end",
}


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
    max_noise: float = MAX_NOISE,
) -> Comparison | None:
    """`a` against `b` on `metric` over the samples' rounds; None when a side is missing."""
    pairs = paired(samples, metric, a, b)
    if not pairs:
        return None
    return Comparison(metric, METRICS.get(metric, metric), a, b, ratio_ci(pairs), max_noise)


def headline(samples: Sequence[Any]) -> Comparison | None:
    """The comparison adaptive rounds wait for: in the kernel when the kernel's clock ran,
    else end to end."""
    return compare(samples, "kernel_ns_per_event") or compare(samples, "overhead_ns_per_event")


def narrow_enough(samples: Sequence[Any], precision: float = PRECISION) -> bool:
    """Whether the headline ratio's interval is within +-`precision`: more rounds would not
    change what the report says. True when there is nothing to compare."""
    found = headline(samples)
    return found is None or found.ratio.noise <= precision
