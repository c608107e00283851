"""The fp16 GradScaler's state goes through last.pt, so a resumed run scales its losses as the uninterrupted one.

No GPU here: the trainer gets an enabled CPU GradScaler (its state machine is the CUDA one's) that grows its scale
every 3 steps; 2 steps an epoch, so only a restored scaler ends where the uninterrupted run's does."""

from __future__ import annotations

import json

import pytest
import torch

from fasd.student_train import trainer as trainer_module

from helpers import fasd, interrupt_on_call

INITIAL_SCALE, GROWTH_INTERVAL = 2.0 ** 4, 3


@pytest.fixture
def scaling(monkeypatch):
    monkeypatch.setattr(trainer_module, "grad_scaler", lambda device: torch.amp.GradScaler(
        "cpu", init_scale=INITIAL_SCALE, growth_interval=GROWTH_INTERVAL))


def _scaler(run_dir) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)["scaler"]


@pytest.mark.slow
def test_grad_scaler_state_round_trips_through_last_pt(tmp_path, synth_config, scaling, monkeypatch):
    args = ["train", "--split", "alpha-to-beta", "--config", synth_config, "--no-teacher", "--epochs", "2",
            "--max-draws", "32", "--batch-size", "16"]
    assert fasd(*args, "--out", tmp_path / "whole").exit_code == 0
    # 4 steps: the scale doubled once (after step 3), one step since.
    assert (_scaler(tmp_path / "whole")["scale"], _scaler(tmp_path / "whole")["_growth_tracker"]) == (
        2 * INITIAL_SCALE, 1)

    original = trainer_module.Trainer._validate
    # Ctrl-C at the second validation: after epoch 1 is saved
    monkeypatch.setattr(trainer_module.Trainer, "_validate", interrupt_on_call(original, 2))
    assert fasd(*args, "--out", tmp_path / "cut").exit_code == 130
    assert (_scaler(tmp_path / "cut")["scale"], _scaler(tmp_path / "cut")["_growth_tracker"]) == (INITIAL_SCALE, 2)
    monkeypatch.setattr(trainer_module.Trainer, "_validate", original)
    resumed = fasd("train", "--resume", tmp_path / "cut")
    assert resumed.exit_code == 0, resumed.output
    assert _scaler(tmp_path / "cut") == _scaler(tmp_path / "whole")
    whole, cut = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "cut"))
    assert cut["eer"] == whole["eer"] and cut["auc"] == whole["auc"]
