"""The experiment plan: the cells (protocol × ablation × teacher store × seed) to run, and where.

A cell's run directory is its identity: ``OUT/runs/<protocol>/<store>/<ablation>/seed<k>``. A re-run skips a
cell whose directory holds metrics.json and resumes one holding last.pt from its own config.json, whatever
training flags are given this time; to run a cell again with other settings, use another ``--out``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from fasd.config import HOLDOUT, INTRA, TO, DatasetRegistry
from fasd.errors import FasdError
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import LAST

METRICS_FILE = "metrics.json"
NO_STORE = "none"  # the store part of a no-teacher cell's path: it reads no teacher targets
NO_TEACHER = "no-teacher"

# Changes per ablation, applied on top of the recipe's training options. An ablation that changes nothing under
# the recipe would repeat "full" under another name, and build_plan refuses it: under hatfas (CE + KL +
# head-aware) the ones that only zero vlmkd's feature and triplet terms (kl-only, kl-feat, kl-ssdg).
ABLATIONS: dict[str, dict] = {
    "full": {},
    NO_TEACHER: {"no_teacher": True},
    "kl-only": {"lambda_feat": 0.0, "lambda_triplet": 0.0},
    "kl-feat": {"lambda_triplet": 0.0},
    "kl-ssdg": {"lambda_feat": 0.0},
    # every loss term, each draw one of the store's K stored views replayed (needs a store cached with --views K)
    "full-views": {"views": True},
}
# TrainOptions fields every cell sets itself; train_overrides may set any other field.
_PER_CELL = {"protocol", "sources", "target", "config", "seed", "no_teacher", "teacher", "recipe"}
DEFAULT_RECIPE = "vlmkd"
_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

FINISHED, RESUME, NEW = "finished", "resume", "new"


@dataclass
class Cell:
    protocol: str
    store: str  # a store name, or NO_STORE for the no-teacher ablation
    ablation: str
    seed: int
    options: TrainOptions

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.store}/{self.ablation}/seed{self.seed}"

    def run_dir(self, out: Path) -> Path:
        return Path(out) / "runs" / self.key


def cell_state(run_dir: Path) -> str:
    """FINISHED (metrics.json written), RESUME (an epoch completed: last.pt) or NEW."""
    if (run_dir / METRICS_FILE).is_file():
        return FINISHED
    return RESUME if (run_dir / LAST).is_file() else NEW


def default_store() -> str:
    """The training default of ``--store`` (TrainOptions.store)."""
    return next(f.default for f in fields(TrainOptions) if f.name == "store")


def _unique(values: list, what: str) -> list:
    if not values:
        raise FasdError(f"give at least one {what}")
    return list(dict.fromkeys(values))


def _store_path(path: str) -> str:
    """Local store paths become absolute so a cell's config.json resumes from any folder; URLs stay."""
    return path if "://" in path else str(Path(path).resolve())


def check_stores(stores: dict[str, str]) -> dict[str, str]:
    for name in stores:
        if not _STORE_NAME.match(name) or name == NO_STORE:
            raise FasdError(f"store name '{name}' is not usable as a folder name: use letters, digits, '_', '.' "
                            f"or '-' (and not '{NO_STORE}', which marks no-teacher runs)")
    return {name: _store_path(path) for name, path in stores.items()}


def _check_overrides(overrides: dict) -> None:
    allowed = {f.name for f in fields(TrainOptions)} - _PER_CELL
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise FasdError(f"unknown training option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")


def _changes_something(ablation: str, options: TrainOptions) -> bool:
    return ablation == "full" or any(getattr(options, key) != value for key, value in ABLATIONS[ablation].items())


def _check_ablations(ablations: list[str], recipe: str, base: dict) -> None:
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise FasdError(f"unknown ablation(s) {', '.join(unknown)}; valid: {', '.join(ABLATIONS)}")
    options = TrainOptions.for_recipe(recipe, protocol="", sources=[], target="", config="", **base)
    idle = [a for a in ablations if not _changes_something(a, options)]
    if idle:
        valid = [a for a in ABLATIONS if _changes_something(a, options)]
        raise FasdError(f"ablation(s) {', '.join(idle)} change nothing under --recipe {recipe} (it already has "
                        f"those settings); valid for {recipe}: {', '.join(valid)}")


def build_plan(registry: DatasetRegistry, protocols: list[str], seeds: list[int], ablations: list[str],
               stores: dict[str, str], train_overrides: dict, recipe: str = DEFAULT_RECIPE) -> list[Cell]:
    """Every cell, seed-major (all of seed 0 first, so early tables already have every row).

    ``train_overrides``: TrainOptions fields for every cell on top of ``recipe``'s defaults
    (``TrainOptions.for_recipe``); a None value means "not given". ``stores`` maps a name to a teacher store;
    when empty, one store named "default" is taken from ``train_overrides["store"]`` (else the training
    default). No-teacher cells run once per protocol and seed.
    """
    train_overrides = {k: v for k, v in train_overrides.items() if v is not None}
    _check_overrides(train_overrides)
    # A,B-to-C,D and A+B-to-C+D are one protocol (one name): planned once
    resolved = list({p.name: p for p in (registry.protocol(n) for n in _unique(protocols, "protocol"))}.values())
    ablations = _unique(ablations, "ablation")
    base = {k: v for k, v in train_overrides.items() if k != "store"}
    _check_ablations(ablations, recipe, base)
    stores = check_stores(stores or {"default": train_overrides.get("store", default_store())})
    cells = []
    for seed in _unique(seeds, "seed"):
        for protocol in resolved:
            for ablation in ablations:
                changes = ABLATIONS[ablation]
                targets = {NO_STORE: None} if changes.get("no_teacher") else stores
                for store, path in targets.items():
                    options = TrainOptions.for_recipe(recipe, protocol=protocol.name,
                                                      sources=list(protocol.sources), target=protocol.target,
                                                      config=str(registry.path), seed=seed, **{**base, **changes})
                    options = replace(options, store=path)  # for_recipe keeps its default for None
                    options.validate()
                    cells.append(Cell(protocol.name, store, ablation, seed, options))
    return cells


def describe_plan(cells: list[Cell], out: Path) -> list[dict]:
    """The plan as JSON-ready rows (plan.json, --dry-run), with each cell's current state."""
    return [{"cell": c.key, "protocol": c.protocol, "store": c.store, "ablation": c.ablation, "seed": c.seed,
             "store_path": c.options.store, "run_dir": str(c.run_dir(out)), "state": cell_state(c.run_dir(out))}
            for c in cells]


def format_plan(rows: list[dict]) -> str:
    counts = {state: sum(r["state"] == state for r in rows) for state in (NEW, RESUME, FINISHED)}
    lines = [f"{len(rows)} cell(s): {counts[NEW]} to run, {counts[RESUME]} to resume, "
             f"{counts[FINISHED]} finished (skipped)"]
    lines += [f"  {r['state']:<8} {r['cell']}" + (f"  store {r['store_path']}" if r["store_path"] else "")
              for r in rows]
    return "\n".join(lines)


def parse_assignments(values: list[str], flag: str) -> dict[str, str]:
    """``["a=1,b=2", "c=3"]`` -> ``{"a": "1", "b": "2", "c": "3"}`` (repeatable, comma-separated flags)."""
    pairs: dict[str, str] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise FasdError(f"{flag} expects NAME=VALUE, got '{item}'")
        if name.strip() in pairs:
            raise FasdError(f"{flag} names '{name.strip()}' twice")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FasdError(f"--seeds expects comma-separated integers (e.g. 0,1,2), got '{text}'") from None


def _limited_runs(run: list[str]) -> list[str]:
    """Plain names before the first ``-to-`` item are its sources, after the last one its targets."""
    joins = [i for i, item in enumerate(run) if TO in item]
    if not joins:
        return run
    for before, after in zip(joins, joins[1:]):
        if after - before > 1:
            raise FasdError(f"--protocols: '{run[before + 1]}' could be a target of '{run[before]}' or a source of "
                            f"'{run[after]}'; write limited-source protocols with '+' (A+B-to-C+D)")
    protocols = [run[i] for i in joins]
    protocols[0] = ",".join(run[:joins[0] + 1])
    protocols[-1] = ",".join([protocols[-1], *run[joins[-1] + 1:]])
    return protocols


def parse_protocols(text: str) -> list[str]:
    """Comma-separated protocols, where a limited-source protocol keeps its own commas: ``holdout-W,C,W-to-P,S``
    is [holdout-W, C,W-to-P,S]. Plain dataset names bind to the neighbouring ``-to-`` item; one between two such
    items is refused as ambiguous (``A+B-to-C+D`` never is)."""
    protocols, run = [], []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith((HOLDOUT, INTRA)):
            protocols += _limited_runs(run) + [item]
            run = []
        else:
            run.append(item)
    return protocols + _limited_runs(run)
