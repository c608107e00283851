"""The multimodal tables of tables.md: an experiment's ``--recipe mmda`` groups in the layouts of paper B's (MMDA)
Tables 1-3, HTER and AUC in %.

- Table 1, Protocol 1 (leave-one-out, ``holdout-X``): a column pair per held-out target, then the average.
- Table 2, Protocol 2: the Protocol-1 groups evaluated with depth, IR, or both missing (fasd.experiment.missing),
  each averaged over the Protocol-1 targets present, then the average over the three settings.
- Table 3, Protocol 3 (limited sources, ``A,B-to-C,D`` and ``A-to-B``): a column pair per protocol.

HTER here is at the EER threshold of the target's test split: paper B's convention (a test-set threshold) and
the threshold of fasd's other experiment tables (metrics.json ``at_eer.acer``). fasd's own HTER, at the threshold
chosen on the sources' validation split (metrics.json ``hter``), is in the per-run table that ends the section.
A fasd cell is mean ± sample std (ddof = 1) over seeds; an average is the plain mean of the cells it averages.
Paper B's reported rows sit in the column of the fasd target whose dataset is theirs (references.mmda_letter) and
otherwise in columns of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fasd.config import HOLDOUT, pooled_members
from fasd.experiment.aggregate import Group, Stat, missing_metric
from fasd.experiment.missing import MISSING
from fasd.experiment.plan import NO_STORE, NO_TEACHER
from fasd.experiment.references import (AVERAGE, MMDA_PROTOCOL1, MMDA_PROTOCOL2, MMDA_PROTOCOL3, Reported,
                                        mmda_letter, mmda_route)
from fasd.experiment.tables import markdown_table, percent

RECIPE = "mmda"
HTER, AUC = "acer_at_eer", "auc"  # the tables' two numbers (aggregate.METRICS names)
MISSING_LABELS = {"depth": "Missing D", "ir": "Missing I", "depth+ir": "Missing D & I"}
REPORTED = "reported by paper B, real datasets"
Method = tuple[str, str]  # (store, ablation): one fasd row


def is_mmda(group: Group) -> bool:
    return group.recipe == RECIPE


@dataclass(frozen=True)
class Column:
    """A column pair (HTER, AUC): a paper key (W, CW→PS, depth) or a fasd protocol, and its heading."""

    key: str
    label: str


def method_label(method: Method) -> str:
    store, ablation = method
    name = {"full": "distilled", NO_TEACHER: "no teacher (CE only)"}.get(ablation, ablation)
    return f"fasd {name}" + ("" if store == NO_STORE else f" [{store}]")


def _seeds(groups: list[Group]) -> str:
    counts = sorted({len(group.runs) for group in groups})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _mean(stats: list[Stat]) -> Stat:
    """The plain mean of the cells' means (no std); n/a when a cell has none."""
    means = [s.mean for s in stats]
    return Stat(None, None, 0) if not means or None in means else Stat(float(np.mean(means)), None, len(means))


def _reported(value: Reported | None) -> list[str]:
    return ["", ""] if value is None else [f"{value.hter:.2f}", f"{value.auc:.2f}"]


@dataclass
class WideTable:
    """Rows of (HTER, AUC) pairs over columns: paper B's reported rows first, then one row per fasd method."""

    columns: list[Column]
    average: bool

    def header(self, first: str) -> list[str]:
        pairs = [*(c.label for c in self.columns), *(["Avg."] if self.average else [])]
        return [first, "seeds", *(f"{label} {what} (%)" for label in pairs for what in ("HTER", "AUC"))]

    def reported_rows(self, reported: dict[str, dict[str, Reported]]) -> list[list[str]]:
        return [[f"{name} ({REPORTED})", "",
                 *(cell for c in self.columns for cell in _reported(values.get(c.key))),
                 *(_reported(values.get(AVERAGE)) if self.average else [])]
                for name, values in reported.items()]

    def fasd_row(self, method: Method, cells: dict[str, tuple[Stat, Stat]], groups: list[Group]) -> list[str]:
        row = [method_label(method), _seeds(groups)]
        for column in self.columns:
            row += [percent(stat) for stat in cells[column.key]] if column.key in cells else ["", ""]
        if self.average:
            row += [percent(_mean([pair[i] for pair in cells.values()])) for i in (0, 1)]
        return row


def _columns(fasd: dict[str, str], reported: dict[str, dict[str, Reported]], paper_label: Callable[[str], str]
             ) -> list[Column]:
    """fasd's columns (key -> heading) in run order, then paper-only keys in the paper's order."""
    columns = [Column(key, label) for key, label in fasd.items()]
    paper = [key for values in reported.values() for key in values if key != AVERAGE]
    return columns + [Column(key, paper_label(key)) for key in dict.fromkeys(paper) if key not in fasd]


def _by_method(groups: list[Group]) -> dict[Method, list[Group]]:
    methods: dict[Method, list[Group]] = {}
    for group in groups:
        methods.setdefault((group.store, group.ablation), []).append(group)
    return methods


def _target_key(group: Group) -> tuple[str, str]:
    """(column key, heading) of a Protocol-1 group: the paper's letter when its target is one of paper B's."""
    letter = mmda_letter(group.target)
    named = f" ({letter})" if letter and letter != group.target else ""
    return letter or group.protocol, f"→{group.target}{named}"


def _route_key(group: Group) -> tuple[str, str]:
    route = mmda_route(list(group.sources), pooled_members(group.target))
    label = f"{'+'.join(group.sources)} → {group.target}"
    return route or group.protocol, label + (f" ({route})" if route else "")


def _pairs(group: Group) -> tuple[Stat, Stat]:
    return group.stats[HTER], group.stats[AUC]


def _keys(groups: list[Group], key_of: Callable[[Group], tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """protocol -> (column key, heading); a paper key already taken by another protocol falls back to the name."""
    keys: dict[str, tuple[str, str]] = {}
    for group in groups:
        key, label = key_of(group)
        taken = {k for protocol, (k, _) in keys.items() if protocol != group.protocol}
        keys[group.protocol] = (group.protocol, label) if key in taken else (key, label)
    return keys


def table1(holdout: list[Group]) -> tuple[list[str], list[list[str]]]:
    keys = _keys(holdout, _target_key)
    table = WideTable(_columns(dict(keys.values()), MMDA_PROTOCOL1, lambda key: f"→{key}"), average=True)
    rows = table.reported_rows(MMDA_PROTOCOL1)
    for method, groups in _by_method(holdout).items():
        rows.append(table.fasd_row(method, {keys[g.protocol][0]: _pairs(g) for g in groups}, groups))
    return table.header("Protocol 1: method"), rows


def table2(holdout: list[Group]) -> tuple[list[str], list[list[str]]]:
    table = WideTable([Column(key, label) for key, label in MISSING_LABELS.items()], average=True)
    rows = table.reported_rows(MMDA_PROTOCOL2)
    for method, groups in _by_method(holdout).items():
        cells = {}
        for setting in MISSING:
            present = [g for g in groups if g.stats[missing_metric(HTER, setting)].n]
            if present:
                cells[setting] = tuple(_mean([g.stats[missing_metric(name, setting)] for g in present])
                                       for name in (HTER, AUC))
        if cells:
            rows.append(table.fasd_row(method, cells, groups))
    return table.header("Protocol 2: method"), rows


def table3(limited: list[Group]) -> tuple[list[str], list[list[str]]]:
    keys = _keys(limited, _route_key)
    table = WideTable(_columns(dict(keys.values()), MMDA_PROTOCOL3, str), average=False)
    rows = table.reported_rows(MMDA_PROTOCOL3)
    for method, groups in _by_method(limited).items():
        rows.append(table.fasd_row(method, {keys[g.protocol][0]: _pairs(g) for g in groups}, groups))
    return table.header("Protocol 3: method"), rows


def _metric(name: str, setting: str | None) -> str:
    return name if setting is None else missing_metric(name, setting)


def per_run_rows(groups: list[Group]) -> list[list[str]]:
    """Every group with all modalities and with each missing setting evaluated: both HTERs, EER and AUC."""
    rows = []
    for group in groups:
        for setting in [None, *(s for s in MISSING if group.stats[missing_metric(HTER, s)].n)]:
            rows.append([group.protocol, method_label((group.store, group.ablation)), setting or "none",
                         str(group.stats[_metric(HTER, setting)].n),
                         *(percent(group.stats[_metric(m, setting)]) for m in ("hter", HTER, "eer", AUC))])
    return rows


NOTE = ("HTER and AUC in %. HTER is at the EER threshold of the target's test split (it looks at the test labels): "
        "paper B's convention and that of fasd's other experiment tables (metrics.json `at_eer.acer`); fasd's "
        "deployable HTER, at the threshold chosen on the sources' validation split (`hter`), is in the per-run "
        "table at the end of this section. fasd rows: mean ± sample std (ddof = 1) over seeds; Avg. is the plain "
        "mean of the row's cells. Rows marked \"reported by paper B\" are its published numbers on the real "
        "WMCA (W), CASIA-SURF (S), PADISI (P) and CASIA-CeFA (C) at its test-set threshold: not comparable with "
        "runs on other (e.g. synthetic) data. A fasd target shares a paper column when its dataset is named like "
        "paper B's (w or wmca, s or surf, p or padisi, c or cefa, any case, an optional casia prefix).")


def _section(title: str, note: str, table: tuple[list[str], list[list[str]]] | None, missing: str) -> list[str]:
    body = markdown_table(*table) if table is not None else [f"_{missing}_"]
    return [f"### {title}", "", note, "", *body, ""]


def render_mmda(groups: list[Group]) -> list[str]:
    """The markdown section (lines) for the groups of ``--recipe mmda``; nothing when there are none."""
    if not groups:
        return []
    holdout = [g for g in groups if g.protocol.startswith(HOLDOUT)]
    limited = [g for g in groups if not g.protocol.startswith(HOLDOUT)]
    with_missing = [g for g in holdout if any(g.stats[missing_metric(HTER, s)].n for s in MISSING)]
    return [
        "## Multimodal protocols (paper B, MMDA: Tables 1-3)", "", NOTE, "",
        *_section("MMDA Table 1: Protocol 1, leave one domain out", "Columns: the held-out target of each "
                  "holdout-X protocol.", table1(holdout) if holdout else None, "no finished holdout-X runs"),
        *_section("MMDA Table 2: Protocol 2, missing modalities at test time", "The Protocol-1 runs scored with "
                  "the missing modalities as zero images (`fasd evaluate --missing`); each cell is the mean over "
                  "the Protocol-1 targets evaluated.", table2(with_missing) if with_missing else None,
                  "no holdout-X run of a multimodal student evaluated with missing modalities"),
        *_section("MMDA Table 3: Protocol 3, limited sources", "Columns: sources → targets; several targets are "
                  "one pooled test set (the union of their test splits).", table3(limited) if limited else None,
                  "no finished A,B-to-C,D runs"),
        "### Per run group: both thresholds (mean ± sample std over seeds)", "",
        *markdown_table(["protocol", "method", "missing", "seeds", "HTER@val (%)", "HTER@EER (%)", "EER (%)",
                         "AUC (%)"], per_run_rows(groups)), "",
    ]
