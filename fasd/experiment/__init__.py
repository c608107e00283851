"""Multi-seed experiment matrices (``fasd experiment``): plan, run, aggregate, tabulate, plot."""

from fasd.experiment.plan import ABLATIONS, parse_assignments, parse_protocols, parse_seeds
from fasd.experiment.references import parse_references
from fasd.experiment.report import report_experiment
from fasd.experiment.runner import ExperimentOutcome, run_experiment

__all__ = ["ABLATIONS", "ExperimentOutcome", "parse_assignments", "parse_protocols", "parse_references", "parse_seeds",
           "report_experiment", "run_experiment"]
