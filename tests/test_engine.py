"""The trainer on its own (no MLflow): determinism, early stopping, schedulers, NaN detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioclf.engine import train
from recording import RecordingLogger
from bioclf.engine.early_stopping import EarlyStopping
from bioclf.engine.metrics import macro_scores, per_class_accuracy, predictions_frame, topk_accuracy
from bioclf.engine.optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from bioclf.errors import RunFailed
from bioclf.spec import deep_merge
from bioclf.spec.schema import EarlyStoppingConfig, RunConfig, SchedulerConfig
from conftest import TINY

TINY_CONFIG = {k: v for k, v in TINY.items() if k in ("data", "model", "train")}


def tiny_config(**over) -> RunConfig:
    base = deep_merge({"data": {"source": "synthetic", "num_workers": 0}, "model": {"backbone": "resnet18"},
                       "train": {"seed": 3, "progress": False, "device": "cpu"}}, TINY_CONFIG)
    return RunConfig.model_validate(deep_merge(base, over))


def test_same_seed_same_metrics_on_cpu(tmp_path):
    cfg = tiny_config(train={"epochs": 1})
    a, b = RecordingLogger(), RecordingLogger()
    train(cfg, a, tmp_path / "a", quiet=True)
    train(cfg, b, tmp_path / "b", quiet=True)
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [tuple(m[k] for k in keys) for _, m in a.epochs] == [tuple(m[k] for k in keys) for _, m in b.epochs]
    c = RecordingLogger()
    train(tiny_config(train={"epochs": 1, "seed": 4}), c, tmp_path / "c", quiet=True)
    assert c.epochs[0][1]["train_loss"] != a.epochs[0][1]["train_loss"]


def test_recording_logger_gets_the_contract(tmp_path):
    log = RecordingLogger()
    result = train(tiny_config(train={"epochs": 2}), log, tmp_path, quiet=True)
    assert [e for e, _ in log.epochs] == [1, 2]
    assert set(log.summary) >= {"best_val_acc", "val_f1_macro", "best_epoch", "epochs_run"}
    assert {"config.yaml", "classes.csv", "history.csv", "predictions/val.csv", "predictions/val_probs.npz",
            "checkpoints/best.pt"} == set(log.artifacts)  # checkpoint.keep: best (the default) keeps no resume state
    for name in ("peak_rss_mb", "checkpoint_mb", "inference_ms_per_image"):
        assert log.summary[name] > 0, name
    assert result.epochs_run == 2 and 1 <= result.best_epoch <= 2
    assert log.summary["stopped_early"] == 0.0
    # the whole softmax of the best epoch, in the rows of val.csv
    probs = np.load(log.artifacts["predictions/val_probs.npz"])["probs"]
    preds = __import__("pandas").read_csv(log.artifacts["predictions/val.csv"])
    assert probs.dtype == np.float16 and probs.shape == (len(preds), 4)
    np.testing.assert_allclose(probs.max(1), preds["p_pred"], atol=1e-3)
    assert (probs.argmax(1) == preds["pred"]).mean() > 0.95  # fp16 ties aside


def test_an_early_stop_is_logged_as_a_fact(tmp_path):
    """patience 1 on a min_delta no epoch can reach: the run stops after its second epoch."""
    log = RecordingLogger()
    cfg = tiny_config(train={"epochs": 6}, early_stopping={"enabled": True, "patience": 1, "min_delta": 1e9})
    result = train(cfg, log, tmp_path, quiet=True)
    assert result.stopped_early and result.epochs_run == 2
    assert log.summary["stopped_early"] == 1.0 and log.summary["epochs_run"] == 2.0


def test_nan_loss_fails_the_run(tmp_path):
    cfg = tiny_config(optimizer={"lr": 1e30, "name": "sgd", "momentum": 0.0}, train={"epochs": 3})
    with pytest.raises(RunFailed, match="NaN/inf"):
        train(cfg, RecordingLogger(), tmp_path, quiet=True)


def test_early_stopping_patience_and_min_delta():
    stop = EarlyStopping(EarlyStoppingConfig(patience=2, min_delta=0.1, monitor="val_loss", mode="min"))
    decisions = [stop.step({"val_loss": v}) for v in [1.0, 0.95, 0.85, 0.84, 0.83]]
    # 0.95 is not 0.1 better than 1.0; 0.85 is; then two epochs without a 0.1 gain -> stop.
    assert decisions == [False, False, False, False, True]
    off = EarlyStopping(EarlyStoppingConfig(enabled=False, patience=1))
    assert not any(off.step({"val_loss": 1.0}) for _ in range(5))


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_plateau_steps_once_per_epoch_on_the_monitored_metric():
    model = torch.nn.Linear(2, 2)
    cfg = SchedulerConfig(name="plateau", factor=0.2, patience=2, monitor="val_loss")
    opt = build_optimizer(model, RunConfig().optimizer)
    sched = build_scheduler(opt, cfg, epochs=10)
    lrs = []
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        lrs.append(current_lr(opt))
        step_scheduler(sched, {"val_loss": loss}, cfg)
    # patience 2: epochs 2 and 3 are bad, the drop happens after the 3rd bad epoch (epoch 4).
    assert lrs[:4] == [1e-3] * 4 and lrs[4] == pytest.approx(2e-4)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_cosine_warmup_and_floor():
    model = torch.nn.Linear(2, 2)
    cfg = SchedulerConfig(name="cosine", warmup_epochs=2, min_lr=1e-5)
    opt = build_optimizer(model, RunConfig().optimizer)
    sched = build_scheduler(opt, cfg, epochs=10)
    lrs = []
    for _ in range(10):
        lrs.append(current_lr(opt))
        step_scheduler(sched, {}, cfg)
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] >= 1e-5


def test_no_weight_decay_on_norm_and_bias():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, RunConfig().optimizer)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and len(decay["params"]) == 1
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_metric_helpers_known_values():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]], dtype=np.float32)
    labels = np.array([0, 2, 1, 1])
    assert topk_accuracy(probs, labels, 1) == 0.75
    assert topk_accuracy(probs, labels, 2) == 1.0
    preds = probs.argmax(1)
    scores = macro_scores(labels, preds)
    # class 0: P 1/2, R 1; class 1: P 1, R 1/2; class 2: P 1, R 1
    assert scores["val_precision_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert scores["val_recall_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    acc = per_class_accuracy(labels, preds, 4)
    assert acc[:3].tolist() == [1.0, 0.5, 1.0] and math.isnan(acc[3])
    frame = predictions_frame(["a", "b", "c", "d"], labels, probs)
    assert frame["top5"].tolist()[1] == "2 1 0" and frame["p_label"].tolist()[2] == pytest.approx(0.4)
