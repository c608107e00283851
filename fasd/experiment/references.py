"""Fixed reference numbers: published results to compare against.

Paper A's tables take ``--reference NAME=VALUE`` (ACERs in %): ``NAME`` applies to every protocol,
``NAME@PROTOCOL`` only to that protocol, e.g. ``RA-TTA@oulu-to-replay=43.70`` and ``RA-TTA@replay-to-oulu=44.26``
(Table 1 of the paper). Paper B's (MMDA) reported HTER / AUC are fixed below, with how a fasd dataset is matched
to its datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasd.errors import FasdError

SCOPE = "@"


def parse_references(pairs: dict[str, str]) -> dict[str, float]:
    references = {}
    for key, value in pairs.items():
        try:
            references[key] = float(value)
        except ValueError:
            raise FasdError(f"--reference {key}={value}: the value must be an ACER in % (e.g. 43.70)") from None
        name, _, protocol = key.partition(SCOPE)
        if not name or (SCOPE in key and not protocol):
            raise FasdError(f"--reference {key}: write NAME=VALUE or NAME{SCOPE}PROTOCOL=VALUE")
    return references


def check_scopes(references: dict[str, float], protocols: list[str]) -> None:
    """A reference scoped to a protocol that is not planned is most likely a typo."""
    for key in references:
        _, _, protocol = key.partition(SCOPE)
        if protocol and protocol not in protocols:
            raise FasdError(f"--reference {key}: '{protocol}' is not one of the planned protocols "
                            f"({', '.join(protocols)})")


def references_for(references: dict[str, float], protocol: str) -> list[tuple[str, float]]:
    """(name, ACER %) of every reference that applies to ``protocol``, in the order given."""
    found = []
    for key, value in references.items():
        name, _, scope = key.partition(SCOPE)
        if scope in ("", protocol):
            found.append((name, value))
    return found


# Paper B (MMDA, PAPER_FACTS B): published HTER and AUC in %, on the real WMCA (W), CASIA-SURF (S), PADISI (P) and
# CASIA-CeFA (C), with the threshold chosen on each test set (its EER threshold: fasd's at_eer.acer).
@dataclass(frozen=True)
class Reported:
    hter: float
    auc: float


AVERAGE = "avg"
# Protocol 1, leave-one-out: by held-out dataset. DADM and FLIP are the best prior methods paper B lists, with
# their average over the four protocols only.
MMDA_PROTOCOL1: dict[str, dict[str, Reported]] = {
    "MMDA": {"W": Reported(1.22, 99.99), "S": Reported(4.21, 98.62), "P": Reported(4.34, 98.58),
             "C": Reported(6.25, 98.18), AVERAGE: Reported(4.00, 98.94)},
    "DADM": {AVERAGE: Reported(13.63, 92.96)},
    "FLIP": {AVERAGE: Reported(16.11, 90.83)},
}
# Protocol 2, Protocol 1 with modalities missing at test time: by missing setting (fasd.experiment.missing).
MMDA_PROTOCOL2: dict[str, dict[str, Reported]] = {
    "MMDA": {"depth": Reported(11.10, 93.97), "ir": Reported(5.98, 98.30), "depth+ir": Reported(13.36, 93.74),
             AVERAGE: Reported(10.14, 95.33)},
}
# Protocol 3, limited sources: by route (sources -> targets, letters in alphabetical order).
MMDA_PROTOCOL3: dict[str, dict[str, Reported]] = {
    "MMDA": {"CW→PS": Reported(7.52, 96.84), "PS→CW": Reported(6.30, 98.35)},
}
# The paper's dataset letters and the names a fasd dataset may have to count as that dataset (any case, an
# optional "casia" prefix): e.g. wmca, W, casia-surf, CASIA_CeFA.
MMDA_DATASETS = {"W": "wmca", "S": "surf", "P": "padisi", "C": "cefa"}


def mmda_letter(dataset: str) -> str | None:
    """Paper B's letter for a fasd dataset name, or None when it names none of its datasets."""
    name = dataset.lower().removeprefix("casia").lstrip("-_")
    return next((letter for letter, full in MMDA_DATASETS.items() if name in (letter.lower(), full)), None)


def mmda_route(sources: list[str], targets: list[str]) -> str | None:
    """Paper B's name of a limited-source protocol (``CW→PS``), or None when a dataset is none of its four."""
    sides = [[mmda_letter(name) for name in side] for side in (sources, targets)]
    if any(letter is None for side in sides for letter in side):
        return None
    return "→".join("".join(sorted(side)) for side in sides)
