"""train.ema: the average follows its formula, validation and the best checkpoint use it, and a
resume continues it exactly (an interrupted EMA run ends where an uninterrupted one does)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bioclf.engine import train
from bioclf.engine.checkpoint import load_checkpoint
from bioclf.engine.ema import Ema
from bioclf.tracking import contract as C
from recording import RecordingLogger
from test_engine import tiny_config
from test_resume import uninterrupted_and_resumed


def test_ema_follows_its_formula_with_warmup_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = Ema(model, decay=0.9, warmup=True)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked += 5
    ema.update()  # step 1: decay min(0.9, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, d * start + (1 - d) * (start + 1))
    assert int(ema.module[1].num_batches_tracked) == 5
    assert ema.updates == 1 and ema.current_decay() == pytest.approx(d)  # the decay step 1 used
    ema.updates = 1000
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training


def test_validation_and_best_checkpoint_use_the_average(tmp_path):
    cfg = tiny_config(train={"epochs": 2, "ema": {"decay": 0.5, "warmup": False}})
    log = RecordingLogger()
    train(cfg, log, tmp_path, quiet=True)
    plain = RecordingLogger()
    train(tiny_config(train={"epochs": 2}), plain, tmp_path / "plain", quiet=True)
    assert log.epochs[0][1]["train_loss"] == plain.epochs[0][1]["train_loss"]  # same training...
    assert log.epochs[0][1]["val_loss"] != plain.epochs[0][1]["val_loss"]  # ...scored with other weights
    best = load_checkpoint(tmp_path / C.BEST_CHECKPOINT, map_location="cpu")
    assert best["metrics"]["val_loss"] in {m["val_loss"] for _, m in log.epochs}


def test_an_interrupted_ema_run_resumes_to_the_same_end(tmp_path):
    cfg = tiny_config(train={"epochs": 3, "ema": {"decay": 0.9}}, checkpoint={"keep": "best+last"})
    reference, resumed = uninterrupted_and_resumed(cfg, tmp_path)
    assert [e for e, _ in resumed.epochs] == [1, 2, 3]
    for key in ("train_loss", "val_loss", "val_acc"):
        assert resumed.epochs[-1][1][key] == pytest.approx(reference.epochs[-1][1][key], rel=1e-6), key
    assert resumed.summary["best_val_loss"] == pytest.approx(reference.summary["best_val_loss"], rel=1e-6)
