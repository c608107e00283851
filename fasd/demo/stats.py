"""Mean ± sample std over seeds of metrics objects, and the demo's verdict sentence built from them."""

from __future__ import annotations

import math
import statistics
from typing import Any

# Paper A (VLM-KD) on its cross-domain protocols: distillation lowers ACER by 9-13 pp and makes the
# seed-to-seed std about 8x smaller (PAPER_FACTS.md).
PAPER_A_DELTA_PP = (-13.0, -9.0)
PAPER_A_STD_RATIO = 8.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(runs: list[dict], keys: list[str]) -> tuple[dict, dict]:
    """(mean, std) over ``runs`` of every numeric leaf under ``keys``, nested like the runs.

    The std is the sample std (n - 1); it is None for one run. A leaf that is None in any run is None in
    both: a mean over the seeds where it happened to be defined would be a different quantity.
    """
    mean: dict = {}
    std: dict = {}
    for key in keys:
        values = [run.get(key) for run in runs]
        if all(isinstance(v, dict) for v in values):
            mean[key], std[key] = aggregate(values, list(dict.fromkeys(k for v in values for k in v)))
        elif all(_is_number(v) for v in values) and values:
            mean[key] = statistics.fmean(values)
            std[key] = statistics.stdev(values) if len(values) > 1 else None
        elif all(v is None or _is_number(v) for v in values):
            mean[key] = std[key] = None
    return mean, std


def std_ratio(no_teacher_std: float | None, distilled_std: float | None) -> float | None:
    """How many times tighter the distilled student's spread is (None when either std is unknown or 0)."""
    if no_teacher_std is None or distilled_std is None or 0 in (no_teacher_std, distilled_std):
        return None
    return no_teacher_std / distilled_std


def verdict(distilled: list[float], no_teacher: list[float]) -> str:
    """One sentence on held-out ACER (fractions) over seeds that claims no more than the numbers show.

    A difference of means no larger than the larger of the two sample stds is called "inside the
    seed-to-seed spread"; the spread is compared only when both stds exist.
    """
    n_d, n_p = len(distilled), len(no_teacher)
    if min(n_d, n_p) < 2:
        return (f"With {min(n_d, n_p)} seed per student there is no seed-to-seed spread to judge a difference "
                f"against, so this run gives no verdict.")
    mean_d, mean_p = statistics.fmean(distilled), statistics.fmean(no_teacher)
    std_d, std_p = statistics.stdev(distilled), statistics.stdev(no_teacher)
    delta = 100 * (mean_d - mean_p)
    spread = 100 * max(std_d, std_p)
    seeds = f"{n_d} + {n_p} seeds"
    if abs(delta) <= spread:
        first = (f"Over {seeds}, distillation changes the mean held-out ACER by {delta:+.2f} pp, inside the "
                 f"seed-to-seed spread (±{spread:.2f} pp), so these runs cannot tell the two students apart")
    else:
        better = "lowers" if delta < 0 else "raises"
        first = (f"Over {seeds}, distillation {better} the mean held-out ACER by {abs(delta):.2f} pp, more than "
                 f"the seed-to-seed spread (±{spread:.2f} pp)")
    ratio = std_ratio(std_p, std_d)
    if ratio is None:
        spread_part = "one of the two stds is 0, so their ratio is undefined"
    elif math.isclose(ratio, 1.0, rel_tol=0.25):
        spread_part = f"the two spreads are about equal ({ratio:.1f}x)"
    else:
        factor, word = (ratio, "tighter") if ratio > 1 else (1 / ratio, "wider")
        spread_part = (f"the distilled student's spread is {factor:.1f}x {word} (a std from "
                       f"{min(n_d, n_p)} seeds is itself rough)")
    return f"{first}; {spread_part}."
