"""ISO/IEC 30107-3 metrics against independent references (brute force, Mann-Whitney, hand counts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.errors import FasdError
from fasd.evaluate.metrics import (
    auc,
    compute_metrics,
    eer,
    format_report,
    rates_at,
    roc_curve,
    tpr_at_fpr,
    video_level,
)
from fasd.evaluate.plots import plot_bars, plot_roc

S, L = LABEL_SPOOF, LABEL_LIVE


def _frames(spoof_scores, live_scores):
    labels = np.r_[np.full(len(spoof_scores), S), np.full(len(live_scores), L)]
    return labels, np.r_[spoof_scores, live_scores].astype(float)


def _random_frames(seed: int, n_spoof: int = 600, n_live: int = 400, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    spoof = 1 / (1 + np.exp(-rng.normal(-1.0, 1.5, n_spoof)))
    live = 1 / (1 + np.exp(-rng.normal(1.0, 1.5, n_live)))
    if decimals is not None:  # coarse rounding creates many ties across classes
        spoof, live = spoof.round(decimals), live.round(decimals)
    return _frames(spoof, live)


def _counted_rates(labels, scores, t):
    """APCER/BPCER by direct counting, one frame at a time."""
    attacks_accepted = sum(1 for y, s in zip(labels, scores) if y == S and s >= t)
    live_rejected = sum(1 for y, s in zip(labels, scores) if y == L and s < t)
    return attacks_accepted / (labels == S).sum(), live_rejected / (labels == L).sum()


def _mann_whitney_auc(labels, scores):
    live, spoof = scores[labels == L], scores[labels == S]
    wins = (live[:, None] > spoof[None, :]).sum() + 0.5 * (live[:, None] == spoof[None, :]).sum()
    return wins / (live.size * spoof.size)


def _grid_rates(labels, scores, grid):
    accepted = scores[None, :] >= grid[:, None]
    apcer = (accepted & (labels == S)).sum(1) / (labels == S).sum()
    bpcer = (~accepted & (labels == L)).sum(1) / (labels == L).sum()
    return apcer, bpcer


def _assert_plain_json(value):
    """Only Python int/float/str/None/dict/list (no numpy scalars), and no NaN."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            _assert_plain_json(v)
    else:
        assert value is None or type(value) in (int, float, str), (value, type(value))
    json.dumps(value, allow_nan=False)


# A tiny example computed by hand:
# sorted scores .9L .7S .6L .3L .2S -> thresholds inf .9 .7 .6 .3 .2
# APCER 0 0 .5 .5 .5 1, BPCER 1 2/3 2/3 1/3 0 0: APCER - BPCER goes -1/6 -> +1/6 between
# t = .7 and t = .6, so EER = .5 (APCER .5; BPCER 2/3 -> 1/3 midpoint) at threshold .65.
TINY_LABELS = np.array([S, L, S, L, L])
TINY_SCORES = np.array([0.2, 0.3, 0.7, 0.6, 0.9])


def test_tiny_example_exact_numbers():
    fpr, tpr, thr = roc_curve(TINY_LABELS, TINY_SCORES)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.7, 0.6, 0.3, 0.2])
    rate, t = eer(TINY_LABELS, TINY_SCORES)
    assert rate == pytest.approx(0.5) and t == pytest.approx(0.65)
    # live 0.3 beats 1 spoof, 0.6 beats 1, 0.9 beats 2: 4 of 6 pairs
    assert auc(TINY_LABELS, TINY_SCORES) == pytest.approx(4 / 6)
    assert tpr_at_fpr(TINY_LABELS, TINY_SCORES, 0.01) == pytest.approx(1 / 3)

    m = compute_metrics(TINY_LABELS, TINY_SCORES)
    assert (m["n"], m["n_live"], m["n_spoof"]) == (5, 3, 2)
    assert m["threshold"] == {"eer": pytest.approx(0.65)}
    # at 0.65: spoof .7 accepted; live .3 and .6 rejected
    assert m["at_eer"] == pytest.approx({"apcer": 0.5, "bpcer": 2 / 3, "acer": 7 / 12})
    # at 0.5: spoof .7 accepted; live .3 rejected
    assert m["at_0.5"] == pytest.approx({"apcer": 0.5, "bpcer": 1 / 3, "acer": 5 / 12})
    assert m["hter"] == pytest.approx(7 / 12)
    assert "per_attack_type" not in m and "apcer_worst_type" not in m
    assert "acer_iso" not in m["at_eer"] and "at_val" not in m and m["level"] == "frame"
    _assert_plain_json(m)


def test_eer_exact_hit_without_interpolation():
    # .9L .7S .6L .4S .3L .2S: APCER - BPCER = 0 exactly at t = .6 (both 1/3)
    labels, scores = _frames([0.2, 0.4, 0.7], [0.3, 0.6, 0.9])
    assert eer(labels, scores) == (pytest.approx(1 / 3), 0.6)
    assert auc(labels, scores) == pytest.approx(6 / 9)


def test_rates_at_match_direct_counting_and_threshold_is_inclusive():
    labels, scores = _random_frames(0, 50, 40, decimals=1)
    for t in (0.0, 0.3, 0.5, 0.55, 0.7, 1.0, 1.1):
        r = rates_at(labels, scores, t)
        apcer, bpcer = _counted_rates(labels, scores, t)
        assert r["apcer"] == pytest.approx(apcer) and r["bpcer"] == pytest.approx(bpcer)
        assert r["acer"] == pytest.approx((apcer + bpcer) / 2)
    # score == threshold counts as accepted (live)
    assert rates_at([S, L], [0.5, 0.5], 0.5) == {"apcer": 1.0, "bpcer": 0.0, "acer": 0.5}


@pytest.mark.parametrize("seed,decimals", [(1, None), (2, None), (3, 1), (4, 2)])
def test_roc_points_match_direct_counting(seed, decimals):
    labels, scores = _random_frames(seed, 120, 80, decimals)
    fpr, tpr, thr = roc_curve(labels, scores)
    assert thr.size == np.unique(scores).size + 1  # one point per distinct threshold
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    apcer, bpcer = _grid_rates(labels, scores, thr)
    np.testing.assert_allclose(fpr, apcer)
    np.testing.assert_allclose(tpr, 1 - bpcer)


@pytest.mark.parametrize("seed,decimals", [(5, None), (6, None), (7, 1), (8, 2), (9, 3)])
def test_eer_against_brute_force_threshold_grid(seed, decimals):
    labels, scores = _random_frames(seed, decimals=decimals)
    rate, t = eer(labels, scores)
    # Dense grid alone: the operating point closest to APCER = BPCER agrees within grid tolerance.
    grid = np.linspace(-0.001, 1.001, 20001)
    apcer, bpcer = _grid_rates(labels, scores, grid)
    best = np.argmin(np.abs(apcer - bpcer))
    tolerance = 2.0 / min((labels == S).sum(), (labels == L).sum())
    assert rate == pytest.approx((apcer[best] + bpcer[best]) / 2, abs=tolerance)
    # With every distinct score added to the grid the interpolated EER is bracketed exactly:
    # no operating point has both rates above it, none has both below.
    apcer, bpcer = _grid_rates(labels, scores, np.r_[grid, scores])
    assert np.max(np.minimum(apcer, bpcer)) <= rate + 1e-12
    assert np.min(np.maximum(apcer, bpcer)) >= rate - 1e-12
    # The returned threshold is an operating point next to the crossing: its rates bracket the EER.
    r = rates_at(labels, scores, t)
    assert min(r["apcer"], r["bpcer"]) <= rate <= max(r["apcer"], r["bpcer"])


@pytest.mark.parametrize("seed,decimals", [(10, None), (11, 1), (12, 2)])
def test_auc_equals_mann_whitney_with_ties(seed, decimals):
    labels, scores = _random_frames(seed, 300, 200, decimals)
    assert auc(labels, scores) == pytest.approx(_mann_whitney_auc(labels, scores), abs=1e-12)


def test_tpr_at_fpr_against_brute_force():
    labels, scores = _random_frames(13, 500, 300, decimals=2)
    thresholds = np.r_[np.inf, np.unique(scores)]
    apcer, bpcer = _grid_rates(labels, scores, thresholds)
    for max_fpr in (0.0, 0.01, 0.05, 0.2):
        expected = (1 - bpcer)[apcer <= max_fpr].max()
        assert tpr_at_fpr(labels, scores, max_fpr) == pytest.approx(expected)
    assert compute_metrics(labels, scores)["tpr_at_fpr_1pct"] == pytest.approx(
        tpr_at_fpr(labels, scores, 0.01))


def test_all_scores_tied():
    labels, scores = _frames([0.4, 0.4], [0.4, 0.4, 0.4])
    fpr, tpr, thr = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert eer(labels, scores) == (0.5, 0.4)  # halfway between accept-nothing and accept-all
    assert auc(labels, scores) == 0.5


def test_perfect_separation():
    labels, scores = _frames([0.1, 0.2, 0.3], [0.7, 0.8])
    m = compute_metrics(labels, scores)
    assert m["eer"] == 0.0 and m["threshold"]["eer"] == 0.7
    assert m["auc"] == 1.0 and m["tpr_at_fpr_1pct"] == 1.0 and m["hter"] == 0.0
    assert m["at_eer"] == {"apcer": 0.0, "bpcer": 0.0, "acer": 0.0}
    # perfectly inverted: every threshold errs on one class fully; APCER = BPCER = 1 at t = 0.7
    inverted = compute_metrics(labels, 1 - scores)
    assert inverted["eer"] == 1.0 and inverted["auc"] == 0.0


@pytest.mark.parametrize("label", [L, S])
def test_single_class_gives_null_not_crash(label):
    labels = np.full(4, label)
    scores = np.array([0.1, 0.4, 0.6, 0.9])
    m = compute_metrics(labels, scores, attack_types=["print"] * 4 if label == S else None)
    _assert_plain_json(m)
    for key in ("eer", "auc", "tpr_at_fpr_1pct", "hter"):
        assert m[key] is None
    assert m["threshold"] == {"eer": None}
    pooled = ("apcer", "bpcer", "acer")
    assert {k: m["at_eer"][k] for k in pooled} == {"apcer": None, "bpcer": None, "acer": None}
    if label == L:
        assert m["at_0.5"] == {"apcer": None, "bpcer": 0.5, "acer": None}
        assert "per_attack_type" not in m
    else:
        assert m["at_0.5"] == {"apcer": 0.5, "bpcer": None, "acer": None, "apcer_per_type": {"print": 0.5},
                               "apcer_worst_type": 0.5, "acer_iso": None}
        assert m["per_attack_type"] == {"print": {"apcer": None, "n": 4}}
        assert m["apcer_worst_type"] is None and m["at_eer"]["acer_iso"] is None
    assert eer(labels, scores) == (None, None) and auc(labels, scores) is None
    with pytest.raises(FasdError, match="both live and spoof"):
        roc_curve(labels, scores)
    assert "n/a" in format_report(m)


def test_single_frame():
    m = compute_metrics([L], [0.3])
    assert m["n"] == 1 and m["eer"] is None and m["at_0.5"]["bpcer"] == 1.0
    _assert_plain_json(m)


def test_empty_and_invalid_input_are_user_errors():
    with pytest.raises(FasdError, match="no frames to evaluate"):
        compute_metrics([], [])
    with pytest.raises(FasdError, match="differ in length"):
        compute_metrics([0, 1], [0.5])
    with pytest.raises(FasdError, match="labels must be"):
        compute_metrics([0, 2], [0.5, 0.5])
    with pytest.raises(FasdError, match="NaN"):
        compute_metrics([0, 1], [0.5, np.nan])


def test_per_attack_type_apcer_by_hand_and_val_threshold():
    labels = np.array([S, S, S, S, S, L, L, L])
    scores = np.array([0.9, 0.2, 0.6, 0.1, 0.8, 0.7, 0.95, 0.3])
    types = np.array(["print", "print", "replay", "replay", "", "", "", ""])
    m = compute_metrics(labels, scores, attack_types=types, val_threshold=0.75)
    # sorted .95L .9S .8S .7L .6S .3L .2S .1S. At t = .8: APCER 2/5, BPCER 2/3 (diff -4/15);
    # at t = .7: APCER 2/5, BPCER 1/3 (diff +1/15) -> w = 4/5: EER 2/5, threshold .8 - .1 w = .72
    assert m["eer"] == pytest.approx(2 / 5) and m["threshold"]["eer"] == pytest.approx(0.72)
    t = m["threshold"]["eer"]  # 0.72: accepts spoofs .9 (print) and .8 (unknown type)
    assert m["per_attack_type"] == {
        "print": {"apcer": 0.5, "n": 2},
        "replay": {"apcer": 0.0, "n": 2},
        "unknown": {"apcer": 1.0, "n": 1},
    }
    assert m["apcer_worst_type"] == 1.0
    assert m["at_eer"]["apcer"] == pytest.approx(2 / 5) and 0.7 < t < 0.8
    # HTER at the validation threshold 0.75: APCER 2/5 (.9, .8), BPCER 2/3 (.7, .3)
    assert m["threshold"]["val"] == 0.75 and m["hter"] == pytest.approx((2 / 5 + 2 / 3) / 2)
    _assert_plain_json(m)
    report = format_report(m)
    assert "replay" in report and "100.00%" in report and "val threshold 0.7500" in report
    # at the validation threshold 0.75: print .9 accepted (1/2), replay none, unknown .8 (1/1)
    assert m["at_val"]["apcer_per_type"] == {"print": 0.5, "replay": 0.0, "unknown": 1.0}
    assert m["at_val"]["acer_iso"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_no_known_attack_types_omits_per_type():
    m = compute_metrics(TINY_LABELS, TINY_SCORES, attack_types=["", "live", "", "", ""])
    assert "per_attack_type" not in m


def test_format_report_prints_percentages():
    report = format_report(compute_metrics(TINY_LABELS, TINY_SCORES))
    assert "50.00%" in report and "58.33%" in report and "41.67%" in report  # EER, ACERs
    assert "66.67%" in report and "threshold 0.6500" in report  # AUC, EER threshold
    assert "frames 5 (live 3, spoof 2)" in report


def test_video_level_mean_and_singletons():
    video_ids = ["a", "b", "a", "", "b", "", "x"]
    labels = [L, S, L, S, S, L, S]
    scores = [0.2, 0.5, 0.6, 0.9, 0.7, 0.1, 0.3]
    types = ["", "print", "", "replay", "print", "", "replay"]
    frame_ids = ["a/0", "b/0", "a/1", "x", "b/1", "solo", "x/0"]
    v = video_level(video_ids, labels, scores, types, frame_ids)
    assert v.ids.tolist() == ["a", "b", "x", "solo", "x"]  # frame "x" stays apart from video "x"
    assert v.labels.tolist() == [L, S, S, L, S]
    np.testing.assert_allclose(v.scores, [0.4, 0.6, 0.9, 0.1, 0.3])
    assert v.attack_types.tolist() == ["", "print", "replay", "", "replay"]
    assert v.n_frames.tolist() == [2, 2, 1, 1, 1]
    anonymous = video_level(video_ids, labels, scores)
    assert anonymous.ids.tolist() == ["a", "b", "#3", "#5", "x"] and anonymous.attack_types is None
    with pytest.raises(FasdError, match="mixes labels"):
        video_level(["a", "a"], [L, S], [0.1, 0.2])


def test_plots_write_png(tmp_path):
    labels, scores = _random_frames(14, 60, 40)
    roc = plot_roc({"student": (labels, scores), "teacher": (labels, scores ** 0.5)}, tmp_path / "roc.png")
    bars = plot_bars({"full": (0.12, 0.02), "no-teacher": 0.2, "no-kl": (0.15, 0.0)},
                     tmp_path / "sub" / "bars.png", "HTER", "HTER (%)", reference=0.1)
    for path in (roc, bars):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# Two attack types where the pooled and the ISO ACER differ (at 0.5): live .9 .8 .3 .7 (BPCER 1/4),
# print .2 .1 .6 (APCER 1/3), replay .75 .85 .4 (APCER 2/3); pooled APCER 3/6.
HAND_LABELS = np.array([L, L, L, L, S, S, S, S, S, S])
HAND_SCORES = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.6, 0.75, 0.85, 0.4])
HAND_TYPES = np.array(["", "", "", "", "print", "print", "print", "replay", "replay", "replay"])


def test_iso_acer_differs_from_pooled_acer_by_hand():
    m = compute_metrics(HAND_LABELS, HAND_SCORES, HAND_TYPES, val_threshold=0.5)
    row = m["at_0.5"]
    assert row["apcer"] == pytest.approx(1 / 2) and row["bpcer"] == pytest.approx(1 / 4)
    assert row["acer"] == pytest.approx(3 / 8)
    assert row["apcer_per_type"] == pytest.approx({"print": 1 / 3, "replay": 2 / 3})
    assert row["apcer_worst_type"] == pytest.approx(2 / 3) and row["acer_iso"] == pytest.approx(11 / 24)
    assert m["at_val"] == row and m["hter"] == pytest.approx(3 / 8)
    assert rates_at(HAND_LABELS, HAND_SCORES, 0.5, HAND_TYPES) == row
    report = format_report(m)
    assert "ACER_ISO" in report and "45.83%" in report and "37.50%" in report


def _brute_force_rates(labels, scores, types, t):
    """Plain loops, no numpy masks: APCER per type, worst, BPCER, pooled and ISO ACER at t."""
    accepted_by_type: dict[str, list[bool]] = {}
    live_rejected, live = 0, 0
    for label, score, kind in zip(labels.tolist(), scores.tolist(), types.tolist()):
        if label == L:
            live += 1
            live_rejected += score < t
        else:
            accepted_by_type.setdefault(kind or "unknown", []).append(score >= t)
    per_type = {k: sum(v) / len(v) for k, v in accepted_by_type.items()}
    spoof_accepted = sum(sum(v) for v in accepted_by_type.values())
    spoofs = sum(len(v) for v in accepted_by_type.values())
    bpcer = live_rejected / live
    return {"apcer": spoof_accepted / spoofs, "bpcer": bpcer, "acer": (spoof_accepted / spoofs + bpcer) / 2,
            "apcer_per_type": per_type, "apcer_worst_type": max(per_type.values()),
            "acer_iso": (max(per_type.values()) + bpcer) / 2}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iso_acer_against_brute_force_two_attack_types(seed):
    rng = np.random.default_rng(seed)
    labels, scores = _random_frames(seed, 150, 100, decimals=2)
    types = np.where(labels == S, rng.choice(["print", "replay"], labels.size, p=[0.3, 0.7]), "")
    types[np.flatnonzero(labels == S)[:3]] = ""  # a few spoofs of unknown type
    m = compute_metrics(labels, scores, types, val_threshold=0.42)
    for key, t in (("at_eer", m["threshold"]["eer"]), ("at_0.5", 0.5), ("at_val", 0.42)):
        expected = _brute_force_rates(labels, scores, types, t)
        row = m[key]
        assert row.keys() == expected.keys()
        for name in ("apcer", "bpcer", "acer", "apcer_worst_type", "acer_iso"):
            assert row[name] == pytest.approx(expected[name]), (key, name)
        assert row["apcer_per_type"] == pytest.approx(expected["apcer_per_type"])
        assert row["acer_iso"] >= row["acer"]
    assert m["per_attack_type"]["unknown"]["n"] == 3
    _assert_plain_json(m)


def test_video_level_metrics_count_videos(tmp_path):
    from fasd.data.source import FrameTable
    from fasd.evaluate.scoring import metrics_for

    class Source:
        name = "toy"
        table = FrameTable(frame_id=np.array(["a0", "a1", "b0", "c0"]), label=np.array([L, L, S, S], np.int8),
                           split=np.array(["test"] * 4), video_id=np.array(["a", "a", "b", "c"]),
                           attack_type=np.array(["", "", "print", "replay"]))

    rows = np.arange(4)
    m = metrics_for(Source(), rows, np.array([0.8, 0.6, 0.3, 0.9]), video=True)
    assert m["level"] == "video" and (m["n"], m["n_live"], m["n_spoof"]) == (3, 1, 2)
    assert m["at_0.5"]["apcer_per_type"] == {"print": 0.0, "replay": 1.0}
    assert format_report(m).startswith("videos 3 (live 1, spoof 2)")
    Source.table.video_id = np.array([""] * 4)
    with pytest.raises(FasdError, match="--video-level needs video IDs"):
        metrics_for(Source(), rows, np.array([0.8, 0.6, 0.3, 0.9]), video=True)


def test_unreadable_frame_while_scoring_is_left_out_with_a_warning(capsys):
    import torch

    from fasd.data.source import FrameSource, FrameTable, UnreadableFrame
    from fasd.evaluate.scoring import readable_scores, score_rows

    class Broken(FrameSource):
        name, format = "toy", "test"
        table = FrameTable(frame_id=np.array(["a", "b"]), label=np.array([L, S], np.int8),
                           split=np.array(["test"] * 2), video_id=np.array(["", ""]), attack_type=np.array(["", ""]))

        def read_image(self, row):
            if row == 1:
                raise UnreadableFrame("b: truncated PNG")
            return np.zeros((8, 8, 3), np.uint8)

    source = Broken()
    scores = score_rows(lambda images: torch.full((len(images),), 0.5).numpy(), source, np.arange(2), progress=False)
    assert scores[0] == 0.5 and np.isnan(scores[1])
    rows, kept = readable_scores(source, np.arange(2), scores)
    assert rows.tolist() == [0] and kept.tolist() == [0.5]
    assert capsys.readouterr().err == "warning: 1 unreadable frame(s) of 'toy' left out of the metrics: b\n"
    with pytest.raises(FasdError, match="none of the 1 frames of 'toy' to score can be decoded"):
        readable_scores(source, np.arange(1, 2), scores[1:])
