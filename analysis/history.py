"""What a run's per-epoch history says: LR drops, best epoch, early stop (Table 2, Figure 1).

The contract logs ``lr`` as the learning rate an epoch *trained with*, so a plateau drop decided
after epoch e shows as a lower ``lr`` at epoch e+1: that first epoch at the lower rate is the
epoch this module calls the drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# More drops than this share of the epochs means a schedule that decays every epoch (cosine):
# listing every epoch as a "drop" would say nothing, so none are listed.
CONTINUOUS_DECAY_SHARE = 0.5


@dataclass
class Curves:
    """One run's history for plotting (Figure 1), and what to mark on it. Here, not in
    ``figures``, so that building a report's inputs does not import matplotlib."""

    history: pd.DataFrame  # epoch, train_loss, val_loss, train_acc, val_acc, lr
    seed: object = None
    best_epoch: int | None = None
    stopped_early: bool = False
    status: str = "FINISHED"


@dataclass(frozen=True)
class LrDrop:
    epoch: int  # first epoch trained at the lower rate
    before: float
    after: float


def by_run(histories: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The long histories frame split per run, each sorted by epoch: one pass over the frame,
    not one filter per run (50 runs x 50 epochs: about 1 s less)."""
    if histories.empty or "run_id" not in histories:
        return {}
    return {rid: h.sort_values("epoch").reset_index(drop=True) for rid, h in histories.groupby("run_id", sort=False)}


def _falls(history: pd.DataFrame) -> list[LrDrop]:
    if "lr" not in history:
        return []
    h = history.dropna(subset=["lr"]).sort_values("epoch")
    epochs, lrs = h["epoch"].tolist(), h["lr"].tolist()
    return [LrDrop(int(e), prev, cur) for e, prev, cur in zip(epochs[1:], lrs[:-1], lrs[1:])
            if cur < prev * (1 - 1e-9)]


def is_continuous_decay(history: pd.DataFrame) -> bool:
    """The LR falls at most epochs (cosine, per-epoch exponential): no discrete drops to list."""
    falls = len(_falls(history))
    return falls > 2 and falls > CONTINUOUS_DECAY_SHARE * (history["lr"].notna().sum() - 1)


def lr_drops(history: pd.DataFrame) -> list[LrDrop]:
    """Epochs where the logged LR fell below the previous epoch's (none for a continuous decay)."""
    return [] if is_continuous_decay(history) else _falls(history)


def best_epoch_of(history: pd.DataFrame, logged: float | None) -> int | None:
    """The logged ``best_epoch`` when there is one, else the epoch of the highest val_acc."""
    if logged is not None and not (isinstance(logged, float) and math.isnan(logged)):
        return int(logged)
    if "val_acc" not in history or history["val_acc"].dropna().empty:
        return None
    return int(history.loc[history["val_acc"].idxmax(), "epoch"])


def stopped_early(history: pd.DataFrame, max_epochs: int | None, status: str, logged: float | None = None) -> bool:
    """The run's logged ``stopped_early`` (0/1) when there is one; for runs from before it was
    logged: a finished run that ran fewer epochs than configured stopped early."""
    if status != "FINISHED":
        return False
    if logged is not None and not pd.isna(logged):
        return bool(logged)
    if history.empty or max_epochs is None:
        return False
    return int(history["epoch"].max()) < int(max_epochs)


def key_epochs(history: pd.DataFrame, best_epoch: int | None, max_epochs: int | None,
               status: str = "FINISHED", logged_stop: float | None = None) -> pd.DataFrame:
    """The rows of Table 2 for one run: first epoch, each LR drop, best, last (or early stop).

    Returns the history's rows at those epochs, in epoch order, with an ``event`` column
    (several events at one epoch are joined: "best, early stop").
    """
    if history.empty:
        return history.assign(event=pd.Series(dtype=str))
    h = history.sort_values("epoch").reset_index(drop=True)
    events: dict[int, list[str]] = {}

    def mark(epoch: int, text: str) -> None:
        events.setdefault(int(epoch), []).append(text)

    mark(h["epoch"].iloc[0], "first")
    for drop in lr_drops(h):
        mark(drop.epoch, f"LR drop {drop.before:.2g} → {drop.after:.2g}")
    if best_epoch is not None and best_epoch in set(h["epoch"]):
        mark(best_epoch, "best")
    last = int(h["epoch"].iloc[-1])
    if status != "FINISHED":
        mark(last, f"last ({status.lower()})")
    else:
        mark(last, "early stop" if stopped_early(h, max_epochs, status, logged_stop) else "last")
    rows = h[h["epoch"].isin(events)].copy()
    rows.insert(1 if "run_id" in rows else 0, "event", [", ".join(events[int(e)]) for e in rows["epoch"]])
    return rows.reset_index(drop=True)
