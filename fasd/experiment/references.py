"""Fixed reference numbers (``--reference NAME=VALUE``): published ACERs in % to compare against.

``NAME`` applies to every protocol; ``NAME@PROTOCOL`` only to that protocol, e.g.
``RA-TTA@oulu-to-replay=43.70`` and ``RA-TTA@replay-to-oulu=44.26`` (Table 1 of the paper).
"""

from __future__ import annotations

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
