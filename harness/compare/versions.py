"""The same spec under two bpftrace releases: do their frames agree?

Each release traced its own run of the same deterministic workload, so counts must be equal
key by key: stacks, comms, histogram buckets. Keys that are values of the run itself (an
skb->hash differs per socket and run) cannot match across runs; a map whose keys are ALL
different is therefore compared as the multiset of its counts, and says so. Any other
difference is a diff frame: the keys, and each release's value (missing where it has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

VALUE_COLUMNS = ("value", "count", "average", "total")


@dataclass
class VersionDiff:
    """One map under two releases: equal or not, how it was compared, the rows that differ."""

    map_name: str
    equal: bool
    how: str
    diff: pd.DataFrame


def compare_map(name: str, left: pd.DataFrame, right: pd.DataFrame, labels: tuple[str, str]
                ) -> VersionDiff:
    """Key-by-key comparison of one map's frames from two releases."""
    values = [c for c in VALUE_COLUMNS if c in left.columns]
    if list(left.columns) != list(right.columns):
        diff = pd.DataFrame({"columns_" + labels[0]: [", ".join(map(str, left.columns))],
                             "columns_" + labels[1]: [", ".join(map(str, right.columns))]})
        return VersionDiff(name, False, "column sets differ", diff)
    keys = [c for c in left.columns if c not in values]
    if not keys:
        merged = pd.concat([left[values].reset_index(drop=True).add_suffix("_" + labels[0]),
                            right[values].reset_index(drop=True).add_suffix("_" + labels[1])],
                           axis=1)
        equal = left[values].reset_index(drop=True).equals(right[values].reset_index(drop=True))
        return VersionDiff(name, equal, "one value", merged if not equal else merged.iloc[0:0])
    lk = set(map(tuple, left[keys].astype(str).values.tolist()))
    rk = set(map(tuple, right[keys].astype(str).values.tolist()))
    if lk and rk and not lk & rk and not {"lo", "hi"} & set(keys):
        lc = sorted(left[values[0]].tolist())
        rc = sorted(right[values[0]].tolist())
        equal = lc == rc
        diff = pd.DataFrame({f"{values[0]}_{labels[0]}": pd.Series(lc),
                             f"{values[0]}_{labels[1]}": pd.Series(rc)})
        return VersionDiff(name, equal, "keys are per-run values: multiset of counts compared",
                           diff.iloc[0:0] if equal else diff)
    as_text = [left.astype({k: str for k in keys}), right.astype({k: str for k in keys})]
    merged = as_text[0].merge(as_text[1], on=keys, how="outer",
                              suffixes=("_" + labels[0], "_" + labels[1]), indicator=True)
    same = merged["_merge"] == "both"
    for v in values:
        a, b = merged[f"{v}_{labels[0]}"], merged[f"{v}_{labels[1]}"]
        same &= (a == b) | (a.isna() & b.isna())
    diff = merged[~same].drop(columns="_merge").reset_index(drop=True)
    return VersionDiff(name, diff.empty, "key by key", diff)


def compare_frames(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame],
                   labels: tuple[str, str]) -> list[VersionDiff]:
    """Every map of either side; a map only one release printed is a difference."""
    out = []
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            have = labels[0] if name in left else labels[1]
            out.append(VersionDiff(name, False, f"only {have} printed it", pd.DataFrame()))
        else:
            out.append(compare_map(name, left[name], right[name], labels))
    return out
