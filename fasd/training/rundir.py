"""File names inside a training run directory (student runs and teacher fine-tuning alike)."""

CONFIG = "config.json"  # the run's options, read back by --resume
LOG = "log.jsonl"  # one line per epoch
LAST = "last.pt"  # every completed epoch: weights + optimiser, scheduler, scaler state (for --resume)
BEST = "best.pt"  # lowest total validation loss
METRICS = "metrics.json"
SCORES = "scores.csv"
REPORT = "report.md"
