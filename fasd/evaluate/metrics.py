"""ISO/IEC 30107-3 presentation-attack-detection metrics on P(live) scores.

Conventions (used by every function here):

* ``score`` is P(live); a frame is accepted as live when ``score >= threshold``.
* Labels: ``LABEL_SPOOF`` (0) = attack, ``LABEL_LIVE`` (1) = bona fide.
* APCER = attacks accepted / attacks; BPCER = live rejected / live; ACER = their mean.
* The ROC is (FPR, TPR) = (APCER, 1 - BPCER), one point per distinct score plus the
  "accept nothing" point (0, 0) whose threshold is ``+inf``. Tied scores move together,
  so the trapezoidal AUC gives ties half credit (it equals the Mann-Whitney U statistic).

Undefined quantities are ``None`` (JSON null), never NaN:

* APCER without spoof frames, BPCER without live frames, and ACER/HTER when either is missing;
* EER, its threshold, AUC and TPR@FPR when only one class is present (and therefore the
  rates at the EER threshold and the per-attack-type APCER too).

Empty input is a ``FasdError``. Ties, perfect separation (EER 0) and a single frame are
handled by the same code path as any other input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.errors import FasdError
from fasd.registry import Registry

# Spoof frames whose attack type is empty are reported under this name when others are known.
UNKNOWN_ATTACK_TYPE = "unknown"


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert inputs; raise FasdError on anything a caller could get wrong."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.size != scores.size:
        raise FasdError(f"labels ({labels.size}) and scores ({scores.size}) differ in length; "
                        "pass one score per frame")
    if labels.size == 0:
        raise FasdError("no frames to evaluate: the selected split is empty; "
                        "check the dataset and --split")
    if not np.isin(labels, (LABEL_SPOOF, LABEL_LIVE)).all():
        raise FasdError(f"labels must be {LABEL_SPOOF} (spoof) or {LABEL_LIVE} (live); "
                        f"found {sorted(set(np.unique(labels).tolist()) - {LABEL_SPOOF, LABEL_LIVE})}")
    if not np.isfinite(scores).all():
        raise FasdError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite; "
                        "the model produced invalid outputs")
    return labels.astype(np.int64), scores


def _ratio(count: int, total: int) -> float | None:
    return float(count) / total if total else None


def _acer(apcer: float | None, bpcer: float | None) -> float | None:
    return None if apcer is None or bpcer is None else (apcer + bpcer) / 2.0


def _species(labels: np.ndarray, attack_types) -> np.ndarray | None:
    """The attack type (PAI species) of every spoof frame, or None when no spoof frame names one.

    Spoof frames with an empty type are reported as ``UNKNOWN_ATTACK_TYPE`` when others are known.
    """
    if attack_types is None:
        return None
    attack_types = np.asarray(attack_types, dtype=str).reshape(-1)
    if attack_types.size != labels.size:
        raise FasdError(f"attack_types ({attack_types.size}) and labels ({labels.size}) differ "
                        "in length; pass one attack type per frame")
    types = attack_types[labels == LABEL_SPOOF]
    if not (types != "").any():
        return None
    return np.where(types == "", UNKNOWN_ATTACK_TYPE, types)


def _rates(labels: np.ndarray, scores: np.ndarray, threshold: float | None,
           species: np.ndarray | None) -> dict[str, Any]:
    """Rates of validated arrays at ``threshold`` (all None when it is None); see ``rates_at``."""
    spoof = labels == LABEL_SPOOF
    accepted = None if threshold is None else scores >= threshold
    apcer = bpcer = None
    if accepted is not None:
        apcer = _ratio(int((accepted & spoof).sum()), int(spoof.sum()))
        bpcer = _ratio(int((~accepted & ~spoof).sum()), int((~spoof).sum()))
    row: dict[str, Any] = {"apcer": apcer, "bpcer": bpcer, "acer": _acer(apcer, bpcer)}
    if species is not None:
        spoof_accepted = None if accepted is None else accepted[spoof]
        per_type = {name: None if spoof_accepted is None else float(spoof_accepted[species == name].mean())
                    for name in sorted(set(species.tolist()))}
        worst = None if accepted is None else max(per_type.values())
        row.update(apcer_per_type=per_type, apcer_worst_type=worst, acer_iso=_acer(worst, bpcer))
    return row


def rates_at(labels, scores, threshold: float, attack_types=None) -> dict[str, Any]:
    """APCER, BPCER and the pooled ACER when frames with ``score >= threshold`` are accepted as live.

    With ``attack_types`` naming the type of at least one spoof frame, also ``apcer_per_type``
    {type: APCER}, ``apcer_worst_type`` (the maximum) and ``acer_iso`` = (worst-type APCER + BPCER)/2,
    the ISO/IEC 30107-3 (and OULU-NPU) ACER.
    """
    labels, scores = _as_arrays(labels, scores)
    return _rates(labels, scores, threshold, _species(labels, attack_types))


def _has_both_classes(labels: np.ndarray) -> bool:
    return bool((labels == LABEL_LIVE).any() and (labels == LABEL_SPOOF).any())


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of validated arrays that hold both classes (see ``roc_curve``)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    is_live = labels[order] == LABEL_LIVE
    # The last index of each run of equal scores: accepting down to that score accepts the whole run.
    run_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    live_accepted = np.cumsum(is_live)[run_ends]
    spoof_accepted = (run_ends + 1) - live_accepted
    fpr = np.r_[0.0, spoof_accepted / spoof_accepted[-1]]
    tpr = np.r_[0.0, live_accepted / live_accepted[-1]]
    thresholds = np.r_[np.inf, sorted_scores[run_ends]]
    return fpr, tpr, thresholds


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds strictly decreasing from ``+inf``.

    Point i is the operating point "accept ``score >= thresholds[i]``": fpr = APCER,
    tpr = 1 - BPCER. Both classes are needed; otherwise a FasdError explains why.
    """
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        raise FasdError("a ROC curve needs both live and spoof frames; "
                        "evaluate on a split that contains both")
    return _roc(labels, scores)


def _eer_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    diff = fpr - (1.0 - tpr)  # APCER - BPCER: -1 at the first point, +1 at the last
    k = int(np.argmax(diff >= 0))
    if diff[k] == 0:
        return float(fpr[k]), float(thresholds[k])
    w = -diff[k - 1] / (diff[k] - diff[k - 1])  # k >= 1 because diff[0] = -1
    rate = fpr[k - 1] + w * (fpr[k] - fpr[k - 1])
    upper = thresholds[k - 1]
    threshold = thresholds[k] if np.isinf(upper) else upper + w * (thresholds[k] - upper)
    return float(rate), float(threshold)


def _auc_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _tpr_from_roc(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    return float(tpr[fpr <= max_fpr].max())  # (0, 0) always qualifies


def eer(labels, scores) -> tuple[float | None, float | None]:
    """(EER, threshold) where APCER = BPCER, or (None, None) with only one class.

    APCER - BPCER rises monotonically along the ROC from -1 to +1. Where it hits 0 at a
    ROC point, that point's rate and threshold are returned (the first, i.e. highest,
    threshold if several). Otherwise EER and threshold are linearly interpolated between
    the two adjacent points where it changes sign; if the upper neighbour is the
    "accept nothing" point (threshold ``+inf``), the finite neighbour's threshold is returned.
    The rates at the returned threshold bracket the EER (they equal it only where scores
    allow an exact crossing; with ties no threshold may reach it).
    """
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        return None, None
    return _eer_from_roc(*_roc(labels, scores))


def auc(labels, scores) -> float | None:
    """Area under the ROC (ties count 1/2), or None with only one class."""
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        return None
    fpr, tpr, _ = _roc(labels, scores)
    return _auc_from_roc(fpr, tpr)


def tpr_at_fpr(labels, scores, max_fpr: float = 0.01) -> float | None:
    """Highest TPR among ROC points with FPR <= ``max_fpr`` (no interpolation), or None with one class."""
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        return None
    fpr, tpr, _ = _roc(labels, scores)
    return _tpr_from_roc(fpr, tpr, max_fpr)


def compute_metrics(labels, scores, attack_types=None, val_threshold: float | None = None,
                    level: str = "frame") -> dict[str, Any]:
    """Every reported metric as a JSON-ready dict (plain Python numbers and None).

    Keys: level ("frame" or "video": what n, n_live and n_spoof count), n, n_live, n_spoof, eer, auc,
    tpr_at_fpr_1pct, hter, threshold{eer[, val]}, bpcer_at_apcer{bpcer20, bpcer100} (``bpcer_at_apcer`` at
    APCER 5 % and 1 %, ISO/IEC 30107-3), and the rates (see ``rates_at``) at each threshold:
    at_eer (the EER threshold of these scores, i.e. of the test set), at_0.5 and, when
    ``val_threshold`` (chosen on the sources' validation data) is given, at_val. When
    ``attack_types`` names a type for at least one spoof frame, every rate row also holds
    apcer_per_type, apcer_worst_type and acer_iso, and per_attack_type{type: {apcer, n}} with
    apcer_worst_type repeat the EER-threshold values at the top level. HTER is the ACER at
    ``val_threshold`` when given, else at the EER threshold. docs/metrics.md maps each paper's
    convention onto these names.
    """
    labels, scores = _as_arrays(labels, scores)
    species = _species(labels, attack_types)
    eer_rate = test_eer_threshold = auc_value = tpr_1pct = None
    if _has_both_classes(labels):
        fpr, tpr, thresholds = _roc(labels, scores)
        eer_rate, test_eer_threshold = _eer_from_roc(fpr, tpr, thresholds)
        auc_value = _auc_from_roc(fpr, tpr)
        tpr_1pct = _tpr_from_roc(fpr, tpr, 0.01)
    threshold: dict[str, float | None] = {"eer": test_eer_threshold}
    metrics: dict[str, Any] = {
        "level": level,
        "n": int(labels.size),
        "n_live": int((labels == LABEL_LIVE).sum()),
        "n_spoof": int((labels == LABEL_SPOOF).sum()),
        "eer": eer_rate,
        "auc": auc_value,
        "tpr_at_fpr_1pct": tpr_1pct,
        "hter": None,
        "threshold": threshold,
        "at_eer": _rates(labels, scores, test_eer_threshold, species),
        "at_0.5": _rates(labels, scores, 0.5, species),
    }
    if val_threshold is not None:
        threshold["val"] = float(val_threshold)
        metrics["at_val"] = _rates(labels, scores, float(val_threshold), species)
    metrics["hter"] = metrics["at_val" if val_threshold is not None else "at_eer"]["acer"]
    if species is not None:
        counts = {name: int((species == name).sum()) for name in metrics["at_eer"]["apcer_per_type"]}
        metrics["per_attack_type"] = {name: {"apcer": apcer, "n": counts[name]}
                                      for name, apcer in metrics["at_eer"]["apcer_per_type"].items()}
        metrics["apcer_worst_type"] = metrics["at_eer"]["apcer_worst_type"]
    metrics["bpcer_at_apcer"] = {name: _bpcer_row(labels, scores, target, species)
                                 for name, target in ISO_BPCER_AT_APCER.items()}
    return metrics


# ISO/IEC 30107-3's BPCER at a fixed APCER: BPCER20 at APCER 5 %, BPCER100 at APCER 1 %.
ISO_BPCER_AT_APCER = {"bpcer20": 0.05, "bpcer100": 0.01}
_COUNT_SLACK = 1e-9  # target x frames within this of an integer counts as that integer (0.05 x 20 = 1)


def _allowed(target: float, total: int) -> int:
    """Frames of ``total`` a rate of at most ``target`` lets through: floor(target x total)."""
    return int(np.floor(target * total + _COUNT_SLACK))


def _too_few(labels: np.ndarray, target: float, limited: int) -> str:
    """Why ``labels`` cannot measure "error rate of class ``limited`` <= target" ("" when they can): the other
    class is absent, or the limited class has fewer than 1/target frames (its error rate moves in steps of
    1/n, so only 0 would meet the target, a rate such a set cannot tell from 1/target)."""
    n_limited = int((labels == limited).sum())
    rate, what, other = ("APCER", "spoof", "live") if limited == LABEL_SPOOF else ("BPCER", "live", "spoof")
    if n_limited == labels.size:
        return f"it has no {other} frames"
    if _allowed(target, n_limited) < 1:
        needed = int(np.ceil(1.0 / target - _COUNT_SLACK))
        step = f" (its smallest non-zero {rate} is {100.0 / n_limited:.2f} %)" if n_limited else ""
        return f"it has {n_limited} {what} frames, {needed} are needed to measure {rate} <= {100 * target:g} %{step}"
    return ""


def _threshold_at(labels: np.ndarray, scores: np.ndarray, target: float, limited: int) -> tuple[float | None, str]:
    """The threshold of "error rate of class ``limited`` <= target, the other class's error as low as possible"
    on validated arrays, or (None, why not). See ``threshold_at_apcer``."""
    why = _too_few(labels, target, limited)
    if why:
        return None, why
    spoof = labels == LABEL_SPOOF
    limited_scores = np.sort(scores[spoof if limited == LABEL_SPOOF else ~spoof])
    other_scores = np.sort(scores[~spoof if limited == LABEL_SPOOF else spoof])
    allowed = _allowed(target, limited_scores.size)
    rate = "APCER" if limited == LABEL_SPOOF else "BPCER"
    candidates = np.unique(scores)  # ascending; accept score >= t
    if limited == LABEL_SPOOF:  # limited: attacks accepted; minimised: live rejected; ties: the highest t
        limited_errors = limited_scores.size - np.searchsorted(limited_scores, candidates, "left")
        other_errors = np.searchsorted(other_scores, candidates, "left")
    else:  # limited: live rejected; minimised: attacks accepted; ties: the lowest t
        limited_errors = np.searchsorted(limited_scores, candidates, "left")
        other_errors = other_scores.size - np.searchsorted(other_scores, candidates, "left")
    meets = limited_errors <= allowed
    if not meets.any():
        return None, f"no threshold reaches {rate} <= {100 * target:g} % (the extreme scores are tied)"
    best = meets & (other_errors == other_errors[meets].min())
    return float(candidates[best].max() if limited == LABEL_SPOOF else candidates[best].min()), ""


def threshold_at_apcer(labels, scores, max_apcer: float) -> float | None:
    """The threshold t (accept as live when score >= t) of the operating point "APCER <= max_apcer".

    Candidates are the distinct scores. Among those with APCER(t) <= ``max_apcer``, the ones with the lowest
    BPCER; of these the highest t (it accepts the fewest attacks for that BPCER, usually the lowest accepted live
    score). None when the frames cannot reach the target: no live frames, fewer than 1/max_apcer spoof frames
    (APCER moves in steps of 1/n_spoof, so the target could only be met at APCER 0, which such a set cannot
    measure), or no candidate meets it (the highest scores are tied attacks).
    """
    labels, scores = _as_arrays(labels, scores)
    return _threshold_at(labels, scores, max_apcer, LABEL_SPOOF)[0]


def threshold_at_bpcer(labels, scores, max_bpcer: float) -> float | None:
    """As ``threshold_at_apcer`` with the classes' roles swapped: among the candidates with BPCER(t) <=
    ``max_bpcer``, the lowest APCER; of these the lowest t (fewest live rejected). None: no spoof frames, or
    fewer than 1/max_bpcer live frames."""
    labels, scores = _as_arrays(labels, scores)
    return _threshold_at(labels, scores, max_bpcer, LABEL_LIVE)[0]


def _bpcer_at(labels: np.ndarray, scores: np.ndarray, max_apcer: float) -> float | None:
    threshold = _threshold_at(labels, scores, max_apcer, LABEL_SPOOF)[0]
    return None if threshold is None else _rates(labels, scores, threshold, None)["bpcer"]


def bpcer_at_apcer(labels, scores, max_apcer: float, attack_types=None) -> dict[str, Any]:
    """BPCER at the ``threshold_at_apcer`` operating point: {apcer_target, threshold, apcer, bpcer}, all rates
    None where the target is unreachable.

    With attack types (as ``rates_at``), also ``bpcer_per_type`` {type: BPCER at the threshold chosen on the
    live frames and that type's attacks} and ``bpcer_worst_type``, their maximum: the BPCER at the lowest
    threshold where every type's APCER <= max_apcer (None when any type cannot reach it).
    """
    labels, scores = _as_arrays(labels, scores)
    return _bpcer_row(labels, scores, max_apcer, _species(labels, attack_types))


def _bpcer_row(labels: np.ndarray, scores: np.ndarray, max_apcer: float, species: np.ndarray | None
               ) -> dict[str, Any]:
    threshold = _threshold_at(labels, scores, max_apcer, LABEL_SPOOF)[0]
    rates = _rates(labels, scores, threshold, None)
    row: dict[str, Any] = {"apcer_target": max_apcer, "threshold": threshold, "apcer": rates["apcer"],
                           "bpcer": rates["bpcer"]}
    if species is not None:
        live = labels == LABEL_LIVE
        spoof_index = np.flatnonzero(~live)
        per_type = {}
        for name in sorted(set(species.tolist())):
            keep = live.copy()
            keep[spoof_index[species == name]] = True
            per_type[name] = _bpcer_at(labels[keep], scores[keep], max_apcer)
        values = list(per_type.values())
        row["bpcer_per_type"] = per_type
        row["bpcer_worst_type"] = None if None in values else max(values)
    return row


@dataclass(frozen=True)
class OperatingRule:
    """A kind of operating point: ``limited`` is the class whose error rate the target bounds (the other's is
    then minimised); None: no target, the EER."""

    help: str
    limited: int | None


OPERATING_POINTS: Registry[OperatingRule] = Registry("--operating-point")
OPERATING_POINTS.add("eer", OperatingRule("eer (APCER = BPCER)", None))
OPERATING_POINTS.add("apcer", OperatingRule("apcer=A (APCER <= A with the lowest BPCER; apcer=0.05 is ISO's BPCER20 "
                                            "point)", LABEL_SPOOF))
OPERATING_POINTS.add("bpcer", OperatingRule("bpcer=B (BPCER <= B with the lowest APCER)", LABEL_LIVE))
DEFAULT_OPERATING_POINT = "eer"
OPERATING_POINT_HELP = ", ".join(rule.help for rule in OPERATING_POINTS.all().values())


class OperatingPoint(NamedTuple):
    """Where a deployed model decides (an OPERATING_POINTS kind and its target), chosen on the sources'
    validation split."""

    kind: str
    target: float | None = None

    @property
    def name(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"


def parse_operating_point(text: str, flag: str = "--operating-point") -> OperatingPoint:
    """``eer``, ``apcer=A`` or ``bpcer=B`` with 0 < A, B < 1; anything else is a one-line FasdError."""
    kind, has_value, value = str(text).strip().lower().partition("=")
    rule = OPERATING_POINTS.all().get(kind)
    try:
        target = float(value) if has_value else None
    except ValueError:
        target = float("nan")
    if rule is None or (rule.limited is None) != (target is None) or (target is not None
                                                                     and not 0.0 < target < 1.0):
        raise FasdError(f"{flag} {text!r}: use {OPERATING_POINT_HELP}; targets are fractions in (0, 1)")
    return OperatingPoint(kind, target)


def operating_threshold(point: OperatingPoint, labels, scores, where: str) -> float:
    """The threshold of ``point`` on ``where``'s frames (the sources' validation split); FasdError naming the
    reason when those frames cannot reach it."""
    labels, scores = _as_arrays(labels, scores)
    limited = OPERATING_POINTS.get(point.kind).limited
    if limited is None:
        threshold, why = eer(labels, scores)[1], "it needs both live and spoof frames"
    else:
        threshold, why = _threshold_at(labels, scores, float(point.target), limited)
    if threshold is None:
        raise _unreachable(point, where, why)
    return threshold


def _unreachable(point: OperatingPoint, where: str, why: str) -> FasdError:
    return FasdError(f"--operating-point {point.name} cannot be reached on {where}: {why}; choose a larger target "
                     "or eer")


def check_operating_point(point: OperatingPoint, labels, where: str) -> None:
    """Refuse, before any training, a target that ``where``'s labels cannot measure (the threshold itself is chosen
    on the scores afterwards, by ``operating_threshold``). The EER needs no check: without both classes a run
    keeps no threshold, as it always has."""
    limited = OPERATING_POINTS.get(point.kind).limited
    why = "" if limited is None else _too_few(np.asarray(labels).reshape(-1), float(point.target), limited)
    if why:
        raise _unreachable(point, where, why)


def stored_operating_point(info: dict) -> str:
    """The operating point a checkpoint's or model's ``val_threshold`` was chosen at (files without one: eer)."""
    return str(info.get("operating_point", DEFAULT_OPERATING_POINT))


def stored_val_threshold(info: dict) -> float | None:
    """The source-validation threshold saved in a student checkpoint or model metadata.

    Written as ``val_threshold``; files from before the rename hold the same value as ``eer_threshold``
    (it was always the EER threshold of the sources' validation split, never of a test set).
    """
    value = info.get("val_threshold", info.get("eer_threshold"))
    return None if value is None else float(value)


class VideoScores(NamedTuple):
    """Video-level arrays, one entry per video in order of first appearance."""

    ids: np.ndarray  # (V,) str: the video_id, or the frame's own id where video_id is empty
    labels: np.ndarray  # (V,) int64
    scores: np.ndarray  # (V,) float64: mean frame score
    attack_types: np.ndarray | None  # (V,) str, when frame attack types were given
    n_frames: np.ndarray  # (V,) int64


def video_level(video_ids, labels, scores, attack_types=None, frame_ids=None) -> VideoScores:
    """Average frame scores per video.

    A frame with an empty video_id is its own video, identified by its frame_id (or
    ``#<row>`` without frame_ids). A video whose frames disagree on label or attack type
    is a data error (FasdError).
    """
    labels, scores = _as_arrays(labels, scores)
    video_ids = np.asarray(video_ids, dtype=str).reshape(-1)
    if video_ids.size != labels.size:
        raise FasdError(f"video_ids ({video_ids.size}) and labels ({labels.size}) differ in length")
    own_ids = (np.asarray(frame_ids, dtype=str).reshape(-1) if frame_ids is not None
               else np.char.add("#", np.arange(labels.size).astype(str)))
    if own_ids.size != labels.size:
        raise FasdError(f"frame_ids ({own_ids.size}) and labels ({labels.size}) differ in length")
    single = video_ids == ""
    ids = np.where(single, own_ids, video_ids)
    # Separate namespaces so a frame id can never merge with a video of the same name.
    keys = np.char.add(np.where(single, "f", "v"), ids)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[inverse.reshape(-1)]
    n_frames = np.bincount(group)
    heads = first[order]

    def per_video(values: np.ndarray, what: str) -> np.ndarray:
        mixed = values != values[heads][group]
        if mixed.any():
            bad = ids[np.flatnonzero(mixed)[0]]
            raise FasdError(f"video {bad!r} mixes {what}s across its frames; fix its video_id or {what}")
        return values[heads]

    types = None if attack_types is None else np.asarray(attack_types, dtype=str).reshape(-1)
    if types is not None and types.size != labels.size:
        raise FasdError(f"attack_types ({types.size}) and labels ({labels.size}) differ in length")
    return VideoScores(
        ids=ids[heads],
        labels=per_video(labels, "label"),
        scores=np.bincount(group, weights=scores) / n_frames,
        attack_types=None if types is None else per_video(types, "attack type"),
        n_frames=n_frames.astype(np.int64),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:6.2f}%"


# Rate rows of ``compute_metrics`` in report order: (label, key, threshold key).
_ROWS = (("at EER", "at_eer", "eer"), ("at 0.5", "at_0.5", None), ("at val", "at_val", "val"))


def format_report(metrics: dict[str, Any]) -> str:
    """A compact human-readable table of ``compute_metrics`` output (rates and AUC in %)."""
    thresholds = metrics["threshold"]
    eer_t = thresholds.get("eer")
    unit = "videos" if metrics.get("level") == "video" else "frames"
    iso = "acer_iso" in metrics["at_0.5"]
    lines = [
        f"{unit} {metrics['n']} (live {metrics['n_live']}, spoof {metrics['n_spoof']})",
        f"EER        {_pct(metrics['eer'])}   test EER threshold "
        + ("n/a" if eer_t is None else f"{eer_t:.4f}"),
        f"AUC        {_pct(metrics['auc'])}",
        f"TPR@FPR1%  {_pct(metrics['tpr_at_fpr_1pct'])}",
        f"HTER       {_pct(metrics['hter'])}   "
        + (f"(val threshold {thresholds['val']:.4f})" if "val" in thresholds else "(test EER threshold)"),
        f"{'':10} {'APCER':>7}  {'BPCER':>7}  {'ACER':>7}" + (f"  {'ACER_ISO':>8}" if iso else ""),
    ]
    for name, key, _ in _ROWS:
        row = metrics.get(key)
        if row is None:
            continue
        lines.append(f"{name:10} {_pct(row['apcer']):>7}  {_pct(row['bpcer']):>7}  {_pct(row['acer']):>7}"
                     + (f"  {_pct(row['acer_iso']):>8}" if iso else ""))
    for name, row in metrics.get("bpcer_at_apcer", {}).items():
        where = f"BPCER at APCER <= {100 * row['apcer_target']:g} %"
        if row["bpcer"] is None:
            where += ": not reachable with these frames"
        elif "bpcer_per_type" in row:
            where += f"; worst attack type {_pct(row['bpcer_worst_type']).strip()}"
        lines.append(f"{name.upper():10} {_pct(row['bpcer'])}   ({where})")
    if iso:
        shown = [(name, key) for name, key, _ in _ROWS if key in metrics]
        lines.append("APCER per attack type: " + ", ".join(name for name, _ in shown))
        for species in metrics["per_attack_type"]:
            cells = "  ".join(f"{_pct(metrics[key]['apcer_per_type'][species]):>7}" for _, key in shown)
            lines.append(f"  {species:16} {cells}  n={metrics['per_attack_type'][species]['n']}")
        worst = "  ".join(f"{_pct(metrics[key]['apcer_worst_type']):>7}" for _, key in shown)
        lines.append(f"  {'worst':16} {worst}")
    return "\n".join(lines)
