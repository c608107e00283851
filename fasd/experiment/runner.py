"""Run an experiment's cells one after another, then tabulate (``fasd experiment``).

Finished cells are skipped, interrupted ones resumed from last.pt, and a cell that raises is recorded in
OUT/failures.json while the others go on (Ctrl-C stops the whole matrix; re-running continues it). A finished
cell of a multimodal student is also evaluated with depth, IR and both missing (fasd.experiment.missing).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fasd.config import DatasetRegistry, load_registry
from fasd.errors import FasdError
from fasd.experiment.missing import evaluate_missing
from fasd.experiment.plan import (DEFAULT_RECIPE, FINISHED, RESUME, Cell, build_plan, cell_state,
                                  describe_plan, format_plan)
from fasd.experiment.references import check_scopes
from fasd.experiment.report import PLAN_FILE, recorded_references, refuse_foreign_folder, report_experiment
from fasd.io_checks import write_atomically
from fasd.student_train.trainer import Trainer, resume_options

FAILURES_FILE = "failures.json"


@dataclass
class ExperimentOutcome:
    plan: list[dict]  # describe_plan rows, with each cell's state before this run
    trained: list[str] = field(default_factory=list)  # cell keys trained (or resumed) to the end
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {cell, run_dir, error, traceback}
    reports: list[Path] = field(default_factory=list)


def _error_line(exc: BaseException) -> str:
    """A user error's own message; otherwise the exception type and its first line."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else "(no message)"
    return message if isinstance(exc, FasdError) else f"{exc.__class__.__name__}: {message}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _record_failure(outcome: ExperimentOutcome, key: str, run_dir: Path, exc: Exception,
                    echo: Callable[[str], None], tag: str) -> None:
    error = _error_line(exc)
    outcome.failed.append({"cell": key, "run_dir": str(run_dir), "error": error,
                           "traceback": "".join(traceback.format_exception(exc))})
    echo(f"{tag} failed {key}: {error}")


def _missing_matrix(cell: Cell, registry: DatasetRegistry, run_dir: Path, tag: str, outcome: ExperimentOutcome,
                    progress: bool, echo: Callable[[str], None]) -> None:
    """Protocol 2 for a finished cell (nothing for RGB students or settings already evaluated)."""
    try:
        written = evaluate_missing(run_dir, registry, cell.options.target, progress)
    except Exception as exc:  # noqa: BLE001 - as a failed cell: recorded, the matrix goes on
        _record_failure(outcome, f"{cell.key} (missing modalities)", run_dir, exc, echo, tag)
        return
    for setting, metrics in written.items():
        echo(f"{tag} {setting} missing {cell.key}: HTER {_pct(metrics['at_eer']['acer'])} at the test EER "
             f"threshold, AUC {_pct(metrics['auc'])}")


def _run_cell(cell: Cell, registry: DatasetRegistry, out: Path, tag: str, outcome: ExperimentOutcome, progress: bool,
              echo: Callable[[str], None]) -> None:
    run_dir = cell.run_dir(out)
    state = cell_state(run_dir)
    if state == FINISHED:
        outcome.skipped.append(cell.key)
        echo(f"{tag} skip   {cell.key} (finished)")
        _missing_matrix(cell, registry, run_dir, tag, outcome, progress, echo)
        return
    echo(f"{tag} {'resume' if state == RESUME else 'start '} {cell.key}")
    began = time.perf_counter()
    try:
        if state == RESUME:
            options = resume_options(run_dir)  # continue exactly as the cell started
            metrics = Trainer(load_registry(options.config), options, run_dir, progress).run(resume=True)
        else:
            metrics = Trainer(registry, cell.options, run_dir, progress).run()
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the matrix; Ctrl-C still does
        _record_failure(outcome, cell.key, run_dir, exc, echo, tag)
        return
    outcome.trained.append(cell.key)
    echo(f"{tag} done   {cell.key}: ACER {_pct(metrics['at_eer']['acer'])} at the EER threshold "
         f"({time.perf_counter() - began:.0f} s)")
    _missing_matrix(cell, registry, run_dir, tag, outcome, progress, echo)


def run_experiment(config: Path | str | None, protocols: list[str], seeds: list[int], ablations: list[str],
                   stores: dict[str, str], out: Path, train_overrides: dict, references: dict[str, float],
                   dry_run: bool = False, progress: bool = True,
                   echo: Callable[[str], None] = tqdm.write, recipe: str = DEFAULT_RECIPE) -> ExperimentOutcome:
    """Run every cell of protocols × ablations × stores × seeds into OUT/runs/, then write the report.

    ``train_overrides``: TrainOptions fields for every cell (epochs, batch_size, device, ...; ``store`` is the
    store of the single "default" teacher when ``stores`` is empty) on top of ``recipe``'s defaults.
    ``references``: ACER in % by ``NAME`` or ``NAME@PROTOCOL``; empty keeps those recorded in OUT/plan.json.
    ``dry_run`` prints the plan and writes nothing.
    """
    registry = load_registry(config)
    cells = build_plan(registry, protocols, seeds, ablations, stores, train_overrides, recipe)
    check_scopes(references, list(dict.fromkeys(cell.protocol for cell in cells)))
    out = Path(out)
    outcome = ExperimentOutcome(describe_plan(cells, out))
    if dry_run:
        echo(format_plan(outcome.plan))
        return outcome
    refuse_foreign_folder(out)
    references = references or recorded_references(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    plan = json.dumps({"config": str(registry.path), "recipe": recipe, "references": references,
                       "train_overrides": train_overrides, "cells": outcome.plan}, indent=2, default=str)
    write_atomically(out / PLAN_FILE, lambda tmp: tmp.write_text(plan))
    try:
        for index, cell in enumerate(cells, 1):
            _run_cell(cell, registry, out, f"[{index}/{len(cells)}]", outcome, progress, echo)
    finally:
        failures = json.dumps(outcome.failed, indent=2)
        write_atomically(out / FAILURES_FILE, lambda tmp: tmp.write_text(failures))
    outcome.reports = report_experiment(out, references)
    echo(f"{len(outcome.trained)} cell(s) trained, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed"
         + (f" (see {out / FAILURES_FILE})" if outcome.failed else "") + f"; tables: {out / 'tables.md'}")
    return outcome
