"""Experiment tables and CSVs carry the ISO/IEC 30107-3 ACER beside the pooled ACER where attack types are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fasd.experiment.report import report_experiment


def _run(out: Path, ablation: str, seed: int, acer: float, iso: float | None) -> None:
    teacher = "none" if ablation == "no-teacher" else "flip"
    run_dir = out / "runs" / "oulu-to-replay" / teacher / ablation / f"seed{seed}"
    run_dir.mkdir(parents=True)
    at_eer = {"apcer": acer, "bpcer": acer, "acer": acer}
    at_05 = {"apcer": 0.5, "bpcer": 0.1, "acer": 0.3}
    if iso is not None:
        at_eer |= {"apcer_per_type": {"print": acer, "replay": 2 * iso - acer}, "apcer_worst_type": 2 * iso - acer,
                   "acer_iso": iso}
        at_05 |= {"apcer_per_type": {"print": 0.5, "replay": 0.7}, "apcer_worst_type": 0.7, "acer_iso": 0.4}
    metrics = {"seed": seed, "sources": ["oulu"], "target": "replay", "best_epoch": 1, "eer": acer, "hter": acer,
               "auc": 0.9, "at_eer": at_eer, "at_0.5": at_05}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "scores.csv").write_text("frame_id,label,score\na,0,0.1\nb,0,0.6\nc,1,0.4\nd,1,0.9\n")


def test_tables_show_iso_acer_when_attack_types_are_known(tmp_path):
    out = tmp_path / "exp"
    _run(out, "full", 0, 0.20, 0.26)
    _run(out, "full", 1, 0.30, 0.34)
    _run(out, "no-teacher", 0, 0.35, 0.45)
    report_experiment(out, {})
    tables = (out / "tables.md").read_text()
    assert "| ACER_ISO (%) | ACER_ISO@0.5 (%) |" in tables
    # ISO at the EER threshold: mean of 26 and 34 = 30.00, sample std 5.66; at 0.5 both 40.00
    assert "| distilled [flip] | 2 | 25.00 ± 7.07 | -10.00 vs no-teacher | 25.00 ± 7.07 | 30.00 ± 0.00 | " \
           "30.00 ± 5.66 | 40.00 ± 0.00 |" in tables
    with open(out / "summary.csv", newline="") as handle:
        full = next(r for r in csv.DictReader(handle) if r["ablation"] == "full")
    assert float(full["acer_iso_at_eer_mean"]) == pytest.approx(0.30)
    with open(out / "results.csv", newline="") as handle:
        assert [float(r["acer_iso_at_eer"]) for r in csv.DictReader(handle)] == pytest.approx([0.26, 0.34, 0.45])


def test_tables_without_attack_types_have_no_iso_columns(tmp_path):
    out = tmp_path / "exp"
    _run(out, "full", 0, 0.20, None)
    report_experiment(out, {})
    tables = (out / "tables.md").read_text()
    assert "ACER_ISO" not in tables and "no ISO ACER" in tables
    assert "| distilled [flip] | 1 | 20.00 |  | 20.00 | 30.00 |\n" in tables
    with open(out / "results.csv", newline="") as handle:
        assert next(csv.DictReader(handle))["acer_iso_at_eer"] == ""
