"""Data that fasd can still use but that limits what it can say: one warning line, and the command goes on."""

from __future__ import annotations

import numpy as np
import pytest

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.source import FrameSource, FrameTable
from fasd.evaluate.scoring import metrics_for
from fasd.student_train.trainer import _warn_one_class
from fasd.training.frames import DomainRows


class Toy(FrameSource):
    name, format, path = "toy", "test", ""

    def __init__(self, labels: list[int]):
        n = len(labels)
        self.table = FrameTable(frame_id=np.array([f"f{i}" for i in range(n)]), label=np.array(labels, np.int8),
                                split=np.array(["test"] * n), video_id=np.array([""] * n),
                                attack_type=np.array([""] * n))

    def read_image(self, row: int) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)


def test_evaluating_one_class_warns_why_the_rates_are_null(capsys):
    metrics = metrics_for(Toy([LABEL_LIVE] * 3), np.arange(3), np.array([0.2, 0.7, 0.9]))
    assert metrics["eer"] is None and metrics["auc"] is None and metrics["at_0.5"]["bpcer"] == pytest.approx(1 / 3)
    assert capsys.readouterr().err.startswith("warning: every frame of 'toy' evaluated is live: EER, AUC")
    metrics_for(Toy([LABEL_LIVE, LABEL_SPOOF]), np.arange(2), np.array([0.2, 0.7]))
    assert capsys.readouterr().err == ""


def test_a_train_source_of_one_class_warns(capsys):
    _warn_one_class([DomainRows(Toy([LABEL_SPOOF] * 2), np.arange(2)),
                     DomainRows(Toy([LABEL_LIVE, LABEL_SPOOF]), np.arange(2))])
    assert capsys.readouterr().err.splitlines() == [
        "warning: every train frame of 'toy' is spoof: it cannot teach live vs spoof, and its domain may pass for "
        "the class"]


def test_multimodal_student_on_rgb_only_data_warns_unless_missing_was_asked(capsys):
    from fasd.constants import MODALITIES
    from fasd.training.modalities import warn_absent_modalities

    rgb, full = Toy([LABEL_LIVE, LABEL_SPOOF]), Toy([LABEL_LIVE, LABEL_SPOOF])
    full.name, full.modalities = "full", MODALITIES
    warn_absent_modalities([rgb, full], MODALITIES)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: 'toy' holds no depth, ir: the rgb/depth/ir student sees them as missing (zero images)"]
    warn_absent_modalities([rgb], MODALITIES, missing=("depth",))
    assert capsys.readouterr().err.splitlines() == [
        "warning: 'toy' holds no ir: the rgb/depth/ir student sees it as missing (zero images)"]
    warn_absent_modalities([rgb], MODALITIES, missing=("depth", "ir"))  # Protocol 2 asked for exactly this
    assert capsys.readouterr().err == ""
