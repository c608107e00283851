"""``fasd demo``: the end-to-end default on synthetic data (pipeline), per-recipe stages, statistics, report."""

from fasd.demo.pipeline import run_demo
from fasd.demo.recipes import DEMO_RECIPES, DemoBudget

__all__ = ["DEMO_RECIPES", "DemoBudget", "run_demo"]
