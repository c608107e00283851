"""Re-aggregate an experiment folder from its run directories (``fasd experiment --report DIR``).

Writes results.csv (one row per finished run), summary.csv (mean and std per group), tables.md and the
plots under plots/. Reads only the run directories (metrics.json, scores.csv), never trains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fasd.errors import FasdError
from fasd.experiment.aggregate import Group, collect_runs, summarize, write_results, write_summary
from fasd.experiment.figures import acer_plots, roc_plots
from fasd.experiment.intra import is_intra, render_intra
from fasd.experiment.mmda_tables import is_mmda, render_mmda
from fasd.experiment.tables import TITLE, render_tables

PLAN_FILE = "plan.json"
# Sections in other papers' layouts after paper A's tables: each claims its groups (the first claim wins) and
# renders them; paper A's cross-domain tables (1, 3, 4, 5) take every group no layout claims.
LAYOUTS: list[tuple[Callable[[Group], bool], Callable[[list[Group]], list[str]]]] = [
    (is_intra, render_intra),  # intra-X protocols: HaTFAS' OULU-NPU table
    (is_mmda, render_mmda),  # --recipe mmda: paper B's Tables 1-3
]


def recorded_references(out: Path) -> dict[str, float]:
    """The references saved in OUT/plan.json by the last ``fasd experiment`` run (none without a plan)."""
    path = Path(out) / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        return {key: float(value) for key, value in json.loads(path.read_text()).get("references", {}).items()}
    except (ValueError, AttributeError) as exc:
        raise FasdError(f"cannot read {path} ({exc}); delete it or pass --reference again") from None


# What fasd experiment writes at the top of its folder; plan.json (written first) marks the folder as its own.
WRITTEN_FILES = (PLAN_FILE, "failures.json", "results.csv", "summary.csv", "tables.md")


def refuse_foreign_folder(out: Path) -> None:
    """Refuse a folder holding files of the names fasd experiment writes when its plan.json is not one fasd
    experiment wrote: they are the user's, and fasd would overwrite them."""
    present = [name for name in WRITTEN_FILES if (Path(out) / name).exists()]
    if not present:
        return
    try:
        plan = json.loads((Path(out) / PLAN_FILE).read_text())
        ours = isinstance(plan, dict) and bool({"cells", "references"} & set(plan))
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise FasdError(f"--out {out} holds {', '.join(present)} that fasd experiment did not write (no plan.json "
                        f"of its own); fasd will not overwrite them: choose another --out")


def report_experiment(out: Path, references: dict[str, float] | None = None) -> list[Path]:
    """Write results.csv, summary.csv, tables.md and plots/*.png; return their paths.

    ``references`` (ACER in %, see fasd.experiment.references) default to those recorded in OUT/plan.json.
    """
    out = Path(out)
    if not (out / "runs").is_dir():
        raise FasdError(f"{out} is not an experiment folder (no runs/ inside); pass the --out of a "
                        f"`fasd experiment` run")
    refuse_foreign_folder(out)
    references = recorded_references(out) if references is None else references
    runs = collect_runs(out)
    groups = summarize(runs)
    tables = out / "tables.md"
    claimed = {key: next((i for i, (claims, _) in enumerate(LAYOUTS) if claims(group)), None)
               for key, group in groups.items()}
    cross = {key: group for key, group in groups.items() if claimed[key] is None}
    sections = [render([group for key, group in groups.items() if claimed[key] == index])
                for index, (_, render) in enumerate(LAYOUTS)]
    text = render_tables(cross, references) if cross or not any(sections) else f"{TITLE}\n"
    tables.write_text("\n".join([text, *(line for section in sections for line in section)]) + "\n")
    plots = out / "plots"
    return [write_results(runs, out / "results.csv"), write_summary(groups, out / "summary.csv"), tables,
            *acer_plots(list(groups.values()), references, plots), *roc_plots(list(groups.values()), plots)]
