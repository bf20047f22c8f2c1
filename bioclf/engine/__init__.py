"""Training and evaluation. Knows nothing of MLflow: it reports through ``RunLogger``."""

from __future__ import annotations

import importlib

# name -> the module that defines it. Imported on first use (PEP 562): the loss, optimizer
# and scheduler registries (bioclf.engine.optim) are importable without torch.
_WHERE = {
    "EvalOutput": "bioclf.engine.evaluate",
    "evaluate": "bioclf.engine.evaluate",
    "NullLogger": "bioclf.engine.logger",
    "RecordingLogger": "bioclf.engine.logger",
    "RunLogger": "bioclf.engine.logger",
    "TrainResult": "bioclf.engine.train",
    "train": "bioclf.engine.train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
