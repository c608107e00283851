"""tables.md: the layouts of the paper's Tables 1, 3, 4 and 5 filled from an experiment's groups of seeds.

Every number is in %: ACER at the EER threshold of the target's test split, mean ± sample std over seeds
(one seed: its value alone), Δ = ACER − baseline ACER in percentage points (negative is better), with EER
and ACER at the fixed 0.5 threshold alongside. ACER pools every attack type (paper A's convention); where the
target names its attack types, ACER_ISO = (worst attack type's APCER + BPCER)/2 (ISO/IEC 30107-3, OULU-NPU)
follows at the EER and the 0.5 thresholds. The baseline is the no-teacher ablation of the same protocol,
or in Table 1 a fixed ``--reference`` number when one applies to the protocol.
"""

from __future__ import annotations

from fasd.experiment.aggregate import Group, Stat
from fasd.experiment.plan import NO_STORE, NO_TEACHER
from fasd.experiment.references import references_for

Baseline = tuple[str, float]  # (name, ACER in %)
Groups = dict[tuple[str, str, str], Group]

LABELS = {"full": "full (KL + feature + SSDG)", NO_TEACHER: "no teacher (CE only)", "kl-only": "KL only",
          "kl-feat": "KL + feature", "kl-ssdg": "KL + SSDG", "full-views": "full, stored views replayed"}
LOSS_COMPONENTS = ("kl-only", "kl-feat", "kl-ssdg", "full", "full-views")


def percent(stat: Stat) -> str:
    if stat.mean is None:
        return "n/a"
    text = f"{100 * stat.mean:.2f}"
    return text if stat.std is None else f"{text} ± {100 * stat.std:.2f}"


def _route(group: Group) -> str:
    return f"{' + '.join(group.sources)} → {group.target}"


def _delta(group: Group, baseline: Baseline | None) -> str:
    acer = group.stats["acer_at_eer"].mean
    if baseline is None or acer is None:
        return ""
    return f"{100 * acer - baseline[1]:+.2f} vs {baseline[0]}"


def _group_row(group: Group, label: str, baseline: Baseline | None) -> list[str]:
    stats = group.stats
    return [group.protocol, _route(group), label, str(stats["acer_at_eer"].n), percent(stats["acer_at_eer"]),
            _delta(group, baseline), percent(stats["eer"]), percent(stats["acer_at_0.5"]),
            percent(stats["acer_iso_at_eer"]), percent(stats["acer_iso_at_0.5"])]


def _no_teacher(groups: Groups, protocol: str) -> Group | None:
    return groups.get((protocol, NO_STORE, NO_TEACHER))


def _no_teacher_baseline(groups: Groups, protocol: str) -> Baseline | None:
    group = _no_teacher(groups, protocol)
    mean = None if group is None else group.stats["acer_at_eer"].mean
    return None if mean is None else (NO_TEACHER, 100 * mean)


def _protocols(groups: Groups) -> list[str]:
    return list(dict.fromkeys(group.protocol for group in groups.values()))


def _of(groups: Groups, protocol: str, ablation: str) -> list[Group]:
    return [g for g in groups.values() if g.protocol == protocol and g.ablation == ablation]


def table1_rows(groups: Groups, references: dict[str, float]) -> list[list[str]]:
    """Cross-domain ACER of the full method per protocol and teacher store, with reference rows."""
    rows = []
    for protocol in _protocols(groups):
        full = _of(groups, protocol, "full")
        if not full:
            continue
        fixed = references_for(references, protocol)
        baseline = fixed[0] if fixed else _no_teacher_baseline(groups, protocol)
        rows += [[protocol, _route(full[0]), name, "", f"{value:.2f}", "", "", "", "", ""] for name, value in fixed]
        rows += [_group_row(g, f"distilled [{g.store}]", baseline) for g in full]
    return rows


def table3_rows(groups: Groups) -> list[list[str]]:
    """No teacher (CE only) against the full method, per protocol."""
    rows = []
    for protocol in _protocols(groups):
        baseline_group, full = _no_teacher(groups, protocol), _of(groups, protocol, "full")
        if baseline_group is None or not full:
            continue
        baseline = _no_teacher_baseline(groups, protocol)
        rows.append(_group_row(baseline_group, LABELS[NO_TEACHER], None))
        rows += [_group_row(g, f"{LABELS['full']} [{g.store}]", baseline) for g in full]
    return rows


def table4_rows(groups: Groups) -> list[list[str]]:
    """Teacher choice: the full method with each teacher store, where a protocol ran two or more."""
    rows = []
    for protocol in _protocols(groups):
        full = _of(groups, protocol, "full")
        if len(full) >= 2:
            baseline = _no_teacher_baseline(groups, protocol)
            rows += [_group_row(g, f"teacher [{g.store}]", baseline) for g in full]
    return rows


def table5_rows(groups: Groups) -> list[list[str]]:
    """Loss components per protocol and store, where at least one partial loss ran."""
    rows = []
    for protocol in _protocols(groups):
        baseline = _no_teacher_baseline(groups, protocol)
        stores = dict.fromkeys(g.store for g in groups.values() if g.protocol == protocol and g.store != NO_STORE)
        for store in stores:
            present = [groups[key] for key in ((protocol, store, a) for a in LOSS_COMPONENTS) if key in groups]
            if any(g.ablation != "full" for g in present):
                rows += [_group_row(g, f"{LABELS[g.ablation]} [{store}]", baseline) for g in present]
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


HEADER = ["protocol", "train → test", "", "seeds", "ACER (%)", "Δ ACER (pp)", "EER (%)", "ACER@0.5 (%)"]
ISO_HEADER = ["ACER_ISO (%)", "ACER_ISO@0.5 (%)"]
TITLE = "# Experiment results"


def _section(title: str, variant: str, rows: list[list[str]], missing: str, iso: bool) -> list[str]:
    """A markdown table; the ACER_ISO columns only when some run's target names its attack types."""
    header = [*HEADER[:2], variant, *HEADER[3:], *(ISO_HEADER if iso else [])]
    rows = [row[:len(header)] for row in rows]
    return [f"## {title}", "", *(markdown_table(header, rows) if rows else [f"_{missing}_"]), ""]


def render_tables(groups: Groups, references: dict[str, float]) -> str:
    iso = any(group.stats["acer_iso_at_eer"].n for group in groups.values())
    lines = [
        TITLE, "",
        "ACER at the EER threshold of the target's test split, in %: mean ± sample std (ddof = 1) over seeds; "
        "a single seed shows its value alone. Δ ACER = ACER − baseline ACER in percentage points (negative is "
        "better); the baseline is named in each cell. EER and ACER at the fixed 0.5 threshold alongside. "
        "ACER pools all attack types"
        + ("; ACER_ISO = (worst attack type's APCER + BPCER)/2 (ISO/IEC 30107-3), n/a where the target "
           "names no attack types." if iso else " (the target names no attack types, so no ISO ACER)."), "",
        *_section("Table 1: cross-domain ACER", "method", table1_rows(groups, references),
                  "no finished runs of the full ablation yet", iso),
        *_section("Table 3: no-teacher ablation", "variant", table3_rows(groups),
                  "needs finished runs of both the full and the no-teacher ablations of a protocol", iso),
        *_section("Table 4: teacher choice", "teacher store", table4_rows(groups),
                  "needs finished full runs of one protocol with two or more teacher stores "
                  "(--stores flip=PATH,clip=PATH)", iso),
        *_section("Table 5: loss components", "loss", table5_rows(groups),
                  "needs finished runs of the kl-only, kl-feat, kl-ssdg or full-views ablations", iso),
    ]
    return "\n".join(lines)
