"""Evaluation: ISO/IEC 30107-3 metrics (``metrics``), report plots (``plots``)."""
