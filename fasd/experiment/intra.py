"""The intra-dataset table of tables.md: an experiment's ``intra-X`` protocols in the layout of HaTFAS' OULU-NPU
table (rows Protocol 1-4; APCER / BPCER / ACER in %).

Naming rule (how a dataset becomes a row): ``<family>_p<N>_<k>`` is fold k of protocol N of ``<family>``,
``<family>_p<N>`` the single fold of protocol N; e.g. ``fasd ingest oulu --protocol Protocol_3/2 --register
oulu_p3_2`` registers fold 2 of OULU-NPU's Protocol 3. A dataset named otherwise is a row of its own.

A protocol with several folds shows mean ± sample std (ddof = 1) over its folds, a fold's value being its mean
over seeds (OULU-NPU's protocols 3 and 4 report mean ± std over their 6 folds); a single fold shows mean ±
sample std over its seeds. Every fasd number is at the Dev threshold (the EER threshold of X's val split,
metrics.json's ``at_val``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fasd.config import INTRA
from fasd.experiment.aggregate import Group, Stat, stat
from fasd.experiment.plan import NO_STORE
from fasd.experiment.tables import LABELS, markdown_table, percent

FOLD_NAME = re.compile(r"(?P<family>.+?)_p(?P<number>\d+)(?:_(?P<fold>\d+))?")
# Columns: APCER of the worst attack type, BPCER, ACER_ISO (ISO/IEC 30107-3, OULU-NPU) and HTER (pooled ACER).
COLUMNS = ("apcer_worst_at_val", "bpcer_at_val", "acer_iso_at_val", "hter")
HEADER = ["protocol", "method", "folds × seeds", "± over", "APCER (%)", "BPCER (%)", "ACER (%)", "HTER (%)"]

# HaTFAS (PAPER_FACTS C), OULU-NPU: (FAR, FRR, HTER) as fractions, mean and std over the 6 folds for P3/P4.
HATFAS_OULU: dict[int, tuple[Stat, Stat, Stat]] = {
    1: (Stat(0.0, None, 1), Stat(0.0050, None, 1), Stat(0.0025, None, 1)),
    2: (Stat(0.0225, None, 1), Stat(0.0061, None, 1), Stat(0.0143, None, 1)),
    3: (Stat(0.0083, 0.0080, 6), Stat(0.0194, 0.0276, 6), Stat(0.0139, 0.0130, 6)),
    4: (Stat(0.0500, 0.0558, 6), Stat(0.0650, 0.0996, 6), Stat(0.0575, 0.0445, 6)),
}
REFERENCE_FAMILY = "oulu"  # HaTFAS' rows go beside families whose name starts with this (OULU-NPU's numbers)
REFERENCE_LABEL = "HaTFAS (reported: FAR / FRR / HTER at argmax)"


@dataclass(frozen=True)
class IntraRow:
    """One row of the table: a numbered protocol of a family, or a dataset that follows no naming rule."""

    label: str
    family: str | None = None
    number: int | None = None


def is_intra(group: Group) -> bool:
    return group.protocol == f"{INTRA}{group.target}"


def row_of(dataset: str) -> IntraRow:
    match = FOLD_NAME.fullmatch(dataset)
    if match is None:
        return IntraRow(dataset)
    return IntraRow(f"Protocol {int(match['number'])}", match["family"], int(match["number"]))


def _method(group: Group) -> str:
    name = "distilled" if group.ablation == "full" else LABELS.get(group.ablation, group.ablation)
    return f"{group.recipe}: {name}" + ("" if group.store == NO_STORE else f" [{group.store}]")


def _pooled(folds: list[Group], column: str) -> Stat:
    """One fold: its stat over seeds. Several: mean ± sample std of the folds' means over seeds."""
    return folds[0].stats[column] if len(folds) == 1 else stat([fold.stats[column].mean for fold in folds])


def _counts(folds: list[Group]) -> str:
    seeds = sorted({len(fold.runs) for fold in folds})
    return f"{len(folds)} × {seeds[0]}" + (f"–{seeds[-1]}" if len(seeds) > 1 else "")


def _reference(row: IntraRow, label: str) -> list[list[str]]:
    numbers = HATFAS_OULU.get(row.number) if row.family and row.family.lower().startswith(REFERENCE_FAMILY) else None
    if numbers is None:
        return []
    far, frr, hter = numbers
    return [[label, REFERENCE_LABEL, "", "folds" if far.std is not None else "", percent(far), percent(frr),
             percent(hter), ""]]


def intra_rows(groups: list[Group]) -> tuple[list[list[str]], list[list[str]]]:
    """(protocol rows with HaTFAS' reference rows, per-fold rows) of the intra-dataset groups."""
    rows: dict[IntraRow, dict[tuple[str, str], list[Group]]] = {}
    for group in groups:
        methods = rows.setdefault(row_of(group.target), {})
        methods.setdefault((group.store, group.ablation), []).append(group)
    families = {row.family for row in rows if row.family is not None}
    ordered = sorted((r for r in rows if r.number is not None), key=lambda r: (r.family, r.number))
    ordered += [r for r in rows if r.number is None]
    table = []
    for row in ordered:
        label = row.label if len(families) <= 1 or row.family is None else f"{row.family} {row.label}"
        for folds in rows[row].values():
            table.append([label, _method(folds[0]), _counts(folds), "seeds" if len(folds) == 1 else "folds",
                          *(percent(_pooled(folds, column)) for column in COLUMNS)])
        table += _reference(row, label)
    per_fold = [[group.protocol, _method(group), str(len(group.runs)),
                 *(percent(group.stats[column]) for column in COLUMNS)] for group in groups]
    return table, per_fold


def render_intra(intra: list[Group]) -> list[str]:
    """The markdown section (lines) for the groups of intra-X protocols; nothing when there are none."""
    if not intra:
        return []
    table, per_fold = intra_rows(intra)
    return [
        "## Intra-dataset protocols (OULU-NPU, in the layout of HaTFAS' table)", "",
        "intra-X trains on X's train split, selects the epoch and the threshold on X's val split (OULU-NPU's "
        "Dev) and tests on X's test split. In %, at that Dev threshold: APCER of the worst attack type, BPCER, "
        "ACER = (worst-type APCER + BPCER)/2 (ISO/IEC 30107-3, the OULU-NPU protocols' ACER), HTER = (pooled "
        "APCER + BPCER)/2. A dataset `<family>_p<N>_<k>` is fold k of protocol N, `<family>_p<N>` its only "
        "fold; other names are rows of their own. Several folds: mean ± sample std over folds, a fold's value "
        "being its mean over seeds; one fold: mean ± sample std over its seeds. HaTFAS' rows are its reported "
        "FAR / FRR / HTER at the argmax decision (P(live) ≥ 0.5, attacks pooled; fasd's `at_0.5` apcer / bpcer "
        "/ acer), not at the Dev threshold: see docs/metrics.md.", "",
        *markdown_table(HEADER, table), "",
        "### Per fold (mean ± sample std over seeds)", "",
        *markdown_table(["protocol", "method", "seeds", *HEADER[4:]], per_fold), "",
    ]
