"""An exponential moving average (EMA) of a model's weights, for ``train.ema``.

Kept as a second copy of the model (same architecture, eval mode, no gradients), updated after
each optimizer step with one fused ``lerp`` over all floating-point tensors (parameters and
BatchNorm statistics); integer buffers (BatchNorm's step counter) are copied. The copy costs the
model's size in device memory and a few percent of a step.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class Ema:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0
        # state_dict tensors share storage with the modules' weights, which every optimizer step,
        # load_state_dict and resume update in place: the pairs stay valid for the whole run.
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        # the floating-point pairs as two lists, built once: update() runs after every step
        self._averages = [e for e, _ in pairs if e.is_floating_point()]
        self._weights = [m for e, m in pairs if e.is_floating_point()]
        self._others = [(e, m) for e, m in pairs if not e.is_floating_point()]

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: average ← decay · average + (1 − decay) · weights."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        if self._averages:
            torch._foreach_lerp_(self._averages, self._weights, weight)
        for average, value in self._others:
            average.copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
