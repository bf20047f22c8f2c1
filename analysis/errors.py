"""The one error the report raises for bad input or nothing to report (CLI exit code 2)."""


class ReportError(Exception):
    """A one-line, user-facing message: unknown experiment, empty store, unwritable folder..."""
