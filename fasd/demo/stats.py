"""Mean ± sample std over seeds of metrics objects, and the demo's comparison of the two students: the difference
of mean held-out ACER with a Welch t-interval, the std ratio with an F-interval, and a verdict generated from the
intervals, so that it never claims more than they show.

scipy is not a dependency: the t and F quantiles come from the regularized incomplete beta function (a continued
fraction, Numerical Recipes §6.4) and bisection, tested against printed tables.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# Paper A (VLM-KD) on its cross-domain protocols: distillation lowers ACER by 9-13 pp and makes the
# seed-to-seed std about 8x smaller (PAPER_FACTS.md).
PAPER_A_DELTA_PP = (-13.0, -9.0)
PAPER_A_STD_RATIO = 8.0
PAPER_A = {"name": "paper A", "delta_pp": list(PAPER_A_DELTA_PP), "std_ratio": PAPER_A_STD_RATIO}
# The recipes whose source paper reports the effect the demo measures (distilled vs no-teacher held-out ACER):
# only vlmkd's. The mmda demo is paper B's system and hatfas paper C's; neither reports it, so their reports
# compare with no paper.
PAPER_EFFECTS = {"vlmkd": PAPER_A}
LEVEL = 0.95  # confidence level of the demo's intervals


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


# ---------------------------------------------------------------------------------------------------------------
# Distributions: regularized incomplete beta, Student's t and Fisher's F CDFs and quantiles.


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging for x < (a + 1) / (a + b + 2)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for numerator in (even, odd):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def f_cdf(x: float, d1: float, d2: float) -> float:
    """P(F <= x) for Fisher's F with (d1, d2) degrees of freedom."""
    return 0.0 if x <= 0 else incomplete_beta(d1 / 2.0, d2 / 2.0, d1 * x / (d1 * x + d2))


def _bisect(cdf, p: float, low: float, high: float) -> float:
    """The x in [low, high] with cdf(x) = p (cdf increasing; ``high`` is doubled until it is above p)."""
    while cdf(high) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if cdf(middle) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, abs(high)):
            break
    return 0.5 * (low + high)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    return _bisect(lambda t: t_cdf(t, df), p, 0.0, 1.0)


def f_quantile(p: float, d1: float, d2: float) -> float:
    """The p-quantile of Fisher's F with (d1, d2) degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0 or d1 <= 0 or d2 <= 0:
        raise ValueError(f"f_quantile needs 0 < p < 1 and positive degrees of freedom, got {p}, {d1}, {d2}")
    return _bisect(lambda x: f_cdf(x, d1, d2), p, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Intervals over seeds.


def welch_interval(a: list[float], b: list[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean(a) - mean(b), low, high, Welch-Satterthwaite df): the Welch t-interval of the difference of means.

    Needs two values per sample and a spread in at least one (else ValueError: there is no interval)."""
    if min(len(a), len(b)) < 2:
        raise ValueError("a Welch interval needs at least two values per sample")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    spread = va * va / (len(a) - 1) + vb * vb / (len(b) - 1)
    if spread == 0:  # (or so small that its square underflows)
        raise ValueError("both samples have no spread: there is no interval")
    delta = statistics.fmean(a) - statistics.fmean(b)
    df = (va + vb) ** 2 / spread
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(va + vb)
    return delta, delta - half, delta + half, df


def std_ratio_interval(no_teacher: list[float], distilled: list[float],
                       level: float = LEVEL) -> tuple[float, float] | None:
    """The F-interval of σ_no_teacher / σ_distilled (normal seeds assumed); None when a sample has no spread."""
    n_p, n_d = len(no_teacher), len(distilled)
    if min(n_p, n_d) < 2:
        return None
    var_p, var_d = statistics.variance(no_teacher), statistics.variance(distilled)
    if 0 in (var_p, var_d):
        return None
    ratio = var_p / var_d
    tail = (1.0 - level) / 2.0
    return (math.sqrt(ratio / f_quantile(1.0 - tail, n_p - 1, n_d - 1)),
            math.sqrt(ratio / f_quantile(tail, n_p - 1, n_d - 1)))


def compare(distilled: list[float], no_teacher: list[float], level: float = LEVEL,
            paper: dict | None = PAPER_A) -> dict:
    """The comparison block of a held-out setting, from held-out ACER fractions per seed: Δ of the means (pp)
    with its Welch interval, the std ratio with its F interval, and the verdict built from them (compared with
    ``paper``'s numbers, when the recipe's paper reports them: PAPER_EFFECTS)."""
    n_d, n_p = len(distilled), len(no_teacher)
    delta = 100 * (statistics.fmean(distilled) - statistics.fmean(no_teacher)) if n_d and n_p else None
    block: dict = {"delta_acer_pp": delta, "delta_ci": None, "ci_level": level, "ci_method": "Welch t-interval",
                   "welch_df": None, "std_ratio": None, "std_ratio_ci": None, "seeds": [n_d, n_p], "paper": paper}
    if min(n_d, n_p) >= 2:
        block["std_ratio"] = std_ratio(statistics.stdev(no_teacher), statistics.stdev(distilled))
        ratio_ci = std_ratio_interval(no_teacher, distilled, level)
        block["std_ratio_ci"] = list(ratio_ci) if ratio_ci else None
        try:
            _, low, high, df = welch_interval(distilled, no_teacher, level)
            block["delta_ci"], block["welch_df"] = [100 * low, 100 * high], df
        except ValueError:
            pass
    block["verdict"] = verdict_text(block)
    return block


def verdict_text(block: dict) -> str:
    """The verdict of a comparison block: a direction only when the whole interval lies on one side of 0 (of 1
    for the std ratio); paper A's numbers compared with the interval, not with the point estimate."""
    n_d, n_p = block["seeds"]
    if min(n_d, n_p) < 2:
        return (f"With {min(n_d, n_p)} seed per student there is no seed-to-seed spread to build an interval from, "
                f"so this run gives no verdict.")
    delta, ci, percent = block["delta_acer_pp"], block["delta_ci"], round(100 * block["ci_level"])
    seeds = f"{n_d} + {n_p} seeds"
    if ci is None:
        first = (f"Over {seeds}, every seed of each student reached the same held-out ACER (Δ of the means "
                 f"{delta:+.2f} pp): with no spread there is no interval, so this run gives no verdict")
    else:
        low, high = ci
        shown = f"Δ mean held-out ACER {delta:+.2f} pp, {percent} % CI [{low:+.2f}, {high:+.2f}] pp"
        if high < 0:
            first = f"Over {seeds}, distillation lowers the held-out ACER ({shown})"
        elif low > 0:
            first = f"Over {seeds}, distillation raises the held-out ACER ({shown})"
        else:
            first = (f"Over {seeds}, these runs cannot tell whether distillation lowers or raises the held-out ACER "
                     f"({shown}: the interval includes 0)")
        paper = block.get("paper")
        if paper is not None:
            paper_low, paper_high = paper["delta_pp"]
            where = "lies outside the interval" if paper_high < low or paper_low > high else "is not ruled out"
            first += f"; {paper['name']}'s {paper_low:.0f} to {paper_high:.0f} pp {where}"
    ratio, ratio_ci = block["std_ratio"], block["std_ratio_ci"]
    if ratio is None or ratio_ci is None:
        spread = "a student's seeds have no spread, so there is no std ratio"
    else:
        shown = f"no-teacher std / distilled std {ratio:.2f}x, {percent} % CI [{ratio_ci[0]:.2f}, {ratio_ci[1]:.2f}]"
        if ratio_ci[0] > 1:
            spread = f"the distilled student's seed-to-seed spread is tighter ({shown})"
        elif ratio_ci[1] < 1:
            spread = f"the distilled student's seed-to-seed spread is wider ({shown})"
        else:
            spread = f"the spreads cannot be told apart ({shown})"
    return f"{first}; {spread}."
