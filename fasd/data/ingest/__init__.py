"""``fasd ingest``: OULU-NPU, Replay-Attack, CelebA-Spoof, FLIP/MCIO and MMDG-list layouts -> HDF5 frame packs."""

from fasd.data.ingest.geometry import DEFAULT_MARGIN
from fasd.data.ingest.runner import INGEST_KINDS, run_ingest
from fasd.data.ingest.summary import IngestSummary

__all__ = ["DEFAULT_MARGIN", "INGEST_KINDS", "IngestSummary", "run_ingest"]
