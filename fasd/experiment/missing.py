"""Paper B's Protocol 2 in an experiment: every finished cell of a multimodal student is evaluated again on its
target's test split with depth, IR, or both missing: zero images, through ``fasd evaluate --missing``'s own code
(fasd.export.evaluation), from the cell's best.pt, so the numbers are those ``fasd evaluate --missing`` prints
for that checkpoint.

Automatic: a student whose checkpoint takes depth and IR gets every setting below, an RGB student none. Each
setting writes ``metrics_missing-<setting>.json`` into the run directory; one already there is kept, so a re-run
only fills the gaps.
"""

from __future__ import annotations

import json
from pathlib import Path

from fasd.config import DatasetRegistry
from fasd.data.open_source import open_target
from fasd.export.evaluation import evaluate_scorer
from fasd.export.metadata import modalities_of
from fasd.export.runtimes import load_scorer
from fasd.training.rundir import BEST

# Setting name (file names, table columns) -> the modalities given as zero images.
MISSING: dict[str, tuple[str, ...]] = {"depth": ("depth",), "ir": ("ir",), "depth+ir": ("depth", "ir")}


def missing_file(setting: str) -> str:
    return f"metrics_missing-{setting}.json"


def evaluate_missing(run_dir: Path, registry: DatasetRegistry, target: str, progress: bool = True) -> dict[str, dict]:
    """Evaluate a finished cell with each missing setting not yet written; {setting: metrics} of those written
    now (empty when every file is there or the student takes no depth / IR)."""
    run_dir = Path(run_dir)
    todo = [name for name in MISSING if not (run_dir / missing_file(name)).is_file()]
    if not todo:
        return {}
    scorer = load_scorer(run_dir / BEST)
    inputs = set(modalities_of(scorer.metadata))
    todo = [name for name in todo if set(MISSING[name]) <= inputs - {"rgb"}]
    if not todo:
        return {}
    source = open_target(registry, target)
    test_rows = source.table.rows_in_splits(["test"])
    written = {}
    for name in todo:
        _, _, metrics = evaluate_scorer(scorer, source, test_rows, MISSING[name], progress=progress,
                                        desc=f"test {target}, {name} missing")
        metrics["missing"] = list(MISSING[name])
        (run_dir / missing_file(name)).write_text(json.dumps(metrics, indent=2))
        written[name] = metrics
    return written
