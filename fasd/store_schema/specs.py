"""Target specs: the name, per-frame shape and dtype of every array a teacher caches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.store_schema import layout

# Every teacher caches its [spoof, live] logits: the store's row-validity check and teacher metrics use them.
REQUIRED_TARGET = layout.LOGITS


@dataclass(frozen=True)
class TargetSpec:
    """One cached target: ``shape`` per frame (the store array is (N, *shape)) and a numpy dtype string."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def bytes_per_frame(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, value: dict) -> "TargetSpec":
        return cls(tuple(int(v) for v in value["shape"]), str(value["dtype"]))


def specs_to_json(specs: dict[str, TargetSpec]) -> dict:
    return {name: spec.to_json() for name, spec in specs.items()}


def v1_specs(feature_dim: int) -> dict[str, TargetSpec]:
    """The fixed targets of a schema-1 store (fasd 0.1)."""
    return {layout.FEATURE: TargetSpec((feature_dim,), layout.FEATURE_DTYPE),
            layout.LOGITS: TargetSpec((2,), layout.LOGITS_DTYPE)}
