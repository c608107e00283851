"""Registry contracts: a loss term and an export format defined in one file each appear in --help and work end to
end; every registered loss term has a hand-worked example; every export format is listed in --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fasd.cli import app
from fasd.export.formats import formats
from fasd.student_train.loss_terms import TERMS
from fasd.student_train.losses import (LossSettings, StepBatch, ce_loss, feature_loss, head_aware_loss, kl_loss,
                                       rs2_align_loss, triplet_loss)

TESTS = Path(__file__).parent
PLUGINS = TESTS / "plugins"

# The loss terms' hand-worked examples (test file::function) and the tensor function each one checks.
HAND_EXAMPLES = {
    "ce": ("test_losses.py::test_ce_loss_matches_hand_computation",
           lambda b, s: ce_loss(b.outputs["logits"], b.labels)),
    "kl": ("test_losses.py::test_kl_loss_at_tau_4_matches_numpy",
           lambda b, s: kl_loss(b.outputs["logits"], b.targets["logits"], s.tau)),
    "feat": ("test_losses.py::test_feature_loss_normalises_projection_and_averages_over_batch",
             lambda b, s: feature_loss(b.outputs["projection"], b.targets["feature"])),
    "triplet": ("test_losses.py::test_triplet_picks_farthest_cross_domain_positive_and_nearest_spoof",
                lambda b, s: triplet_loss(b.outputs["projection"], b.labels, b.domains, s.margin)),
    "head-aware": ("test_head_aware_loss.py::test_hand_worked_example",
                   lambda b, s: head_aware_loss(b.outputs["layer_cls"], b.targets["layer_cls"])),
    "rs2": ("test_mmda_modules.py::test_rs2_loss_on_a_hand_computed_example_both_readings",
            lambda b, s: rs2_align_loss(b.outputs["projection"], b.labels, s.texts["captions"],
                                        s.texts["caption_labels"])),
}


def _batch() -> tuple[StepBatch, LossSettings]:
    """Every output, target and text array a registered term may read, random, for 6 frames of 2 domains."""
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    outputs = {"logits": torch.randn(6, 2, generator=g), "projection": torch.randn(6, 8, generator=g),
               "layer_cls": torch.randn(6, 3, 5, generator=g)}
    targets = {"logits": torch.randn(6, 2, generator=g),
               "feature": torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1),
               "layer_cls": torch.randn(6, 3, 7, generator=g)}
    texts = {"captions": torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1),
             "caption_labels": torch.tensor([0, 0, 1, 1])}
    return StepBatch(outputs, labels, torch.tensor([0, 0, 0, 1, 1, 1]), targets), LossSettings(texts=texts)


@pytest.mark.parametrize("name", list(TERMS.all()))
def test_every_loss_term_has_a_hand_example_and_computes_that_function(name):
    assert name in HAND_EXAMPLES, f"loss term {name} has no hand-worked example: add one and list it here"
    where, function = HAND_EXAMPLES[name]
    path, test = where.split("::")
    assert f"def {test}(" in (TESTS / path).read_text(), f"{where} does not exist"
    batch, settings = _batch()
    term = TERMS[name]
    assert set(term.targets) <= set(batch.targets) and set(term.outputs) <= set(batch.outputs)
    torch.testing.assert_close(term.compute(batch, settings), function(batch, settings))


def test_every_export_format_is_in_export_help():
    text = " ".join(CliRunner().invoke(app, ["export", "--help"]).output.split())
    for name, kind in formats().items():
        assert f"{name}: {kind.help}" in text


def test_every_loss_term_is_in_train_help():
    text = " ".join(CliRunner().invoke(app, ["train", "--help"]).output.split())
    for term in TERMS.all().values():
        assert term.describe() in text
        assert term.alias is None or term.alias in text


def test_loss_flag_errors_are_one_line_listing_the_terms(tmp_path):
    for bad in ("nope=1", "kl=abc", "kl=-1"):
        result = CliRunner().invoke(app, ["train", "--split", "x", "--loss", bad])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert ", ".join(TERMS) in result.output
    result = CliRunner().invoke(app, ["train", "--split", "x", "--loss", "kl=1", "--lambda-kl", "2"])
    assert result.exit_code == 2 and "--lambda-kl" in result.output


# Runs in its own interpreter: the plugins register themselves before the CLI is built, as a user's would.
PLUGIN_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import dummy_loss, dummy_format  # each file registers its member
from typer.testing import CliRunner
from fasd.cli import app

config, store, out = sys.argv[2:5]
def run(*args):
    result = CliRunner().invoke(app, list(args))
    return {"code": result.exit_code, "output": result.output}
print(json.dumps({
    "train_help": run("train", "--help"), "export_help": run("export", "--help"),
    "train": run("train", "--split", "holdout-gamma", "--config", config, "--store", store, "--epochs", "1",
                 "--max-draws", "8", "--batch-size", "4", "--loss", "dummy=0.5", "--out", out + "/run"),
    "export": run("export", out + "/run/best.pt", "--format", "dummy", "--out", out + "/student.dummy"),
    "predict": run("predict", out + "/student.dummy", out + "/face.png", "--json", "--no-detect"),
}))
"""


@pytest.mark.slow
def test_a_loss_term_and_an_export_format_in_one_file_each(synth_config, synth_store, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 90, 80)).save(tmp_path / "face.png")
    done = subprocess.run([sys.executable, "-c", PLUGIN_RUN, str(PLUGINS), str(synth_config), str(synth_store),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, result in runs.items():
        assert result["code"] == 0, (name, result["output"][-2000:])
    assert "dummy: mean squared logit (a test plugin)" in " ".join(runs["train_help"]["output"].split())
    assert "dummy: ONNX under the suffix .dummy" in " ".join(runs["export_help"]["output"].split())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["loss"] == {"dummy": 0.5}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["train"]["dummy"] > 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["loss_weights"]["lambda_dummy"] == 0.5
    assert "parity" in runs["export"]["output"] and (tmp_path / "student.dummy").is_file()
    rows = json.loads(runs["predict"]["output"][runs["predict"]["output"].index("["):])
    assert len(rows) == 1 and 0.0 <= rows[0]["p_live"] <= 1.0


def test_run_configs_of_fasd_0_2_load_and_unknown_terms_are_named(tmp_path):
    from fasd.errors import FasdError
    from fasd.student_train.run_config import TrainOptions

    old = {"protocol": "holdout-gamma", "sources": ["alpha", "beta"], "target": "gamma", "config": "fasd.toml",
           "recipe": "hatfas", "lambda_ce": 0.3, "lambda_kl": 0.7, "lambda_feat": 0.0, "lambda_triplet": 0.0,
           "lambda_head_aware": 1.0, "lambda_rs2": 0.0, "workers": 0}  # fasd 0.2: no loss, no operating_point
    (tmp_path / "config.json").write_text(json.dumps(old))
    options = TrainOptions.load(tmp_path / "config.json")
    options.validate()
    assert options.loss == {} and options.operating_point == "eer"
    assert options.loss_weights() == {"ce": 0.3, "kl": 0.7, "feat": 0.0, "triplet": 0.0, "head-aware": 1.0}
    (tmp_path / "config.json").write_text(json.dumps(old | {"loss": {"gone": 1.0}}))
    with pytest.raises(FasdError, match=f"unknown --loss term 'gone'; registered: {', '.join(TERMS)}"):
        TrainOptions.load(tmp_path / "config.json").validate()
