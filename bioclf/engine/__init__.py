"""Training and evaluation. Knows nothing of MLflow: it reports through ``RunLogger``."""

from __future__ import annotations

from bioclf.lazy import lazy_exports

# name -> the module that defines it. Imported on first use (PEP 562): the loss, optimizer
# and scheduler registries (bioclf.engine.optim) are importable without torch.
_WHERE = {
    "EvalOutput": "bioclf.engine.evaluate",
    "evaluate": "bioclf.engine.evaluate",
    "NullLogger": "bioclf.engine.logger",
    "RunLogger": "bioclf.engine.logger",
    "TrainResult": "bioclf.engine.train",
    "train": "bioclf.engine.train",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _WHERE)
