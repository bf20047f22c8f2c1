"""The one exception type that the CLIs turn into a one-line message and exit code 2."""


class BioclfError(Exception):
    """Bad input: a spec, a data folder, an argument. The message names the file, key or path."""


class RunFailed(Exception):
    """A training run failed; the suite records it and goes on (exit code 1 at the end)."""
