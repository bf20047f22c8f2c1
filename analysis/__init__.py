"""Rebuild a suite's report (figures and tables) from the MLflow tracking store alone.

``analysis.store`` is the only module that talks to MLflow: it reads a suite into plain pandas
objects (``analysis.suite.SuiteData``). Everything else works on those DataFrames and arrays:
``history`` (key epochs), ``classwise`` (per-class accuracy, confusion), ``tables``,
``figures``, ``render`` (Markdown / CSV / LaTeX), ``build`` (one suite's whole report) and the
``bioclf-report`` CLI in ``cli``.
"""

from analysis.errors import ReportError
from analysis.suite import SuiteData

__all__ = ["ReportError", "SuiteData"]
