"""Rebuild a suite's report (figures and tables) from the MLflow tracking store alone.

``analysis.store`` is the only module that talks to MLflow: it reads a suite into plain pandas
objects (``analysis.suite.SuiteData``). Everything else works on those DataFrames and arrays:
``history`` (key epochs), ``classwise`` (per-class accuracy, confusion), ``tables``,
``figures``, ``render`` (Markdown / CSV / LaTeX), ``build`` (one suite's whole report) and the
``bioclf-report`` CLI in ``cli``. ``cache`` keys each file of a report by what it is drawn from;
``probe`` tells, without MLflow, whether a local store changed since a report was built.
"""

from analysis.errors import ReportError

__all__ = ["ReportError", "SuiteData"]


def __getattr__(name: str):
    # SuiteData brings pandas (half a second): only when asked for, so that a ``bioclf-report``
    # whose reports are all current answers without importing it.
    if name == "SuiteData":
        from analysis.suite import SuiteData

        return SuiteData
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
