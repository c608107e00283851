"""What an ingest run did: counts, and every video or image it left out, with the reason."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fasd.constants import CLASS_NAMES, SPLITS
from fasd.data.ingest.plan import Batch, Skip

EXAMPLES_PER_REASON = 3


@dataclass
class IngestSummary:
    kind: str
    out: Path
    unit: str  # "videos" or "images"
    seen: int  # videos or images considered (excluded ones not counted)
    frames: int = 0
    splits: Counter[str] = field(default_factory=Counter)  # frames per split
    labels: Counter[int] = field(default_factory=Counter)  # frames per label
    skipped: list[Skip] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)  # reason -> count, left out by design

    def add(self, batch: Batch) -> None:
        self.frames += len(batch.frame_ids)
        self.splits.update(meta.split for meta in batch.metas)
        self.labels.update(meta.label for meta in batch.metas)
        self.skipped += batch.skipped

    def format(self) -> str:
        """One paragraph for the terminal."""
        splits = ", ".join(f"{split} {self.splits[split]}" for split in SPLITS if self.splits[split])
        labels = ", ".join(f"{name} {self.labels[label]}" for label, name in enumerate(CLASS_NAMES)
                           if self.labels[label])
        text = (f"{self.kind} -> {self.out}: {self.seen} {self.unit} seen, {self.frames} frames written"
                + (f" ({splits}; {labels})." if self.frames else "."))
        if self.excluded:
            text += " Excluded: " + ", ".join(f"{count} {reason}" for reason, count in self.excluded.items()) + "."
        if self.skipped:
            by_reason: dict[str, list[str]] = defaultdict(list)
            for skip in self.skipped:
                by_reason[skip.reason].append(skip.item)
            groups = [f"{reason} x{len(items)} (e.g. {', '.join(items[:EXAMPLES_PER_REASON])})"
                      for reason, items in by_reason.items()]
            text += f" Skipped {len(self.skipped)} {self.unit}: " + "; ".join(groups) + "."
        return text
