"""Early stopping on a monitored validation metric."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type only: the engine does not import the schema
    from bioclf.spec.schema import EarlyStoppingConfig


class EarlyStopping:
    """Counts epochs without an improvement of more than ``min_delta``; stops at ``patience``."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.best = math.inf if cfg.mode == "min" else -math.inf
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.cfg.mode == "min":
            return value < self.best - self.cfg.min_delta
        return value > self.best + self.cfg.min_delta

    def step(self, metrics: dict[str, float]) -> bool:
        """Record one epoch; True when training should stop."""
        value = metrics[self.cfg.monitor]
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.cfg.enabled and self.bad_epochs >= self.cfg.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
