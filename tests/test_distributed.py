"""Data-parallel training with torch.distributed on CPU (gloo, 2 processes): the whole val set
is scored, steps per epoch are as documented, rank 0 alone logs, resume is exact."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mlflow.tracking import MlflowClient

from bioclf.engine import train
from recording import RecordingLogger
from bioclf.engine.distributed import Dist, current
from bioclf.engine.evaluate import evaluate
from conftest import TINY, write_spec
from test_resume import InterruptAt

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def _worker(rank: int, folder: str, cfg_json: str) -> None:
    """One rank: (a) sharded evaluation of an odd-sized val set vs the whole set in one
    process; (b) a run interrupted after epoch 2 and resumed vs an uninterrupted one."""
    from bioclf.data import build_loaders
    from bioclf.engine.optim import build_loss
    from bioclf.models import build_model
    from bioclf.spec.schema import RunConfig

    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    try:
        ctx = current()
        assert ctx == Dist(rank, WORLD, rank)
        cfg = RunConfig.model_validate(json.loads(cfg_json))
        folder = Path(folder)
        out: dict = {}

        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data.synthetic.num_classes).eval()
        loss_fn = build_loss(cfg.loss)
        device = torch.device("cpu")
        sharded = build_loaders(cfg.data, seed=0, rank=rank, world=WORLD)
        whole = build_loaders(cfg.data, seed=0)
        mine = evaluate(model, sharded.val, loss_fn, device)
        dist.destroy_process_group()  # the single-process reference must not gather
        ref = evaluate(model, whole.val, loss_fn, device)
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous2", rank=rank, world_size=WORLD)
        out["shard_size"] = len(list(sharded.val.sampler))
        out["eval_max_abs_diff"] = float(np.abs(mine.probs - ref.probs).max())
        out["eval_labels_equal"] = bool((mine.labels == ref.labels).all())
        out["eval_loss"] = [mine.loss, ref.loss]
        out["eval_acc"] = [mine.acc, ref.acc]
        out["n_val"] = len(mine.labels)

        reference = RecordingLogger()
        train(cfg, reference, folder / "ref", quiet=True)
        try:
            train(cfg, InterruptAt(2), folder / "run", quiet=True)
        except KeyboardInterrupt:
            pass
        resumed = RecordingLogger()
        train(cfg, resumed, folder / "run", quiet=True, resume=True)
        out["ref_epochs"] = [m for _, m in reference.epochs]
        out["resumed_epochs"] = [m for _, m in resumed.epochs]
        out["ref_summary"], out["resumed_summary"] = reference.summary, resumed.summary
        out["artifacts"] = sorted(reference.artifacts)
        dist.destroy_process_group()
        # best.pt scored alone, on the whole val set, must give what the DDP run logged: the
        # ranks scored their shards with the BatchNorm statistics rank 0 saved.
        from bioclf.engine.checkpoint import load_checkpoint

        best = build_model(cfg.model, cfg.data.synthetic.num_classes)
        best.load_state_dict(load_checkpoint(folder / "ref" / "checkpoints" / "best.pt")["model"])
        alone = evaluate(best, whole.val, loss_fn, device)
        out["best_pt_eval"] = [alone.loss, alone.acc]
        (folder / f"rank{rank}.json").write_text(json.dumps(out, default=float))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    from bioclf.spec import load_suite

    folder = tmp_path_factory.mktemp("ddp")
    spec = dict(TINY, variants={"full": {}}, baseline="full")
    spec["data"] = dict(TINY["data"], synthetic=dict(TINY["data"]["synthetic"], num_classes=3, val_per_class=7))
    spec["train"] = {"epochs": 3, "device": "cpu"}
    cfg = load_suite(write_spec(folder, spec)).runs[0].config
    mp.spawn(_worker, args=(str(folder), cfg.model_dump_json()), nprocs=WORLD, join=True)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_sharded_evaluation_scores_the_whole_val_set_once(ddp_results):
    for out in ddp_results:  # 21 images: shards of 11 and 10, no padding, gathered in order
        assert out["n_val"] == 21
        assert out["eval_labels_equal"]
        assert out["eval_max_abs_diff"] < 1e-5
        assert out["eval_loss"][0] == pytest.approx(out["eval_loss"][1], rel=1e-5)
        assert out["eval_acc"][0] == out["eval_acc"][1]
    assert [out["shard_size"] for out in ddp_results] == [11, 10]


def test_ddp_resume_equals_uninterrupted_and_ranks_agree(ddp_results):
    main, other = ddp_results
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "train_steps")
    assert [[e[k] for k in keys] for e in main["resumed_epochs"]] == [[e[k] for k in keys] for e in main["ref_epochs"]]
    # Every rank sees the same reduced metrics (the scheduler and early stopping agree).
    assert [[e[k] for k in keys] for e in other["ref_epochs"]] == [[e[k] for k in keys] for e in main["ref_epochs"]]
    # 3 classes x 24 train images = 72; 36 per rank; batch 16, drop_last -> 2 steps per epoch.
    assert [e["train_steps"] for e in main["ref_epochs"]] == [2.0, 2.0, 2.0]
    for name in ("best_val_acc", "best_val_loss", "val_f1_macro", "best_epoch"):
        assert main["resumed_summary"][name] == pytest.approx(main["ref_summary"][name]), name
    assert {"history.csv", "predictions/val.csv", "checkpoints/best.pt"} <= set(main["artifacts"])
    loss, acc = main["best_pt_eval"]
    assert acc == main["ref_summary"]["best_val_acc"]
    assert loss == pytest.approx(main["ref_summary"]["best_val_loss"], rel=1e-5)
    assert other["artifacts"] == [] and other["ref_summary"] == {}  # rank 1 logged nothing


def test_torchrun_suite_one_run_whole_val_set_documented_steps(tmp_path, tracking_uri):
    spec = dict(TINY, variants={"full": {}, "other": {"loss.label_smoothing": 0.0}}, baseline="full")
    spec["train"] = {"epochs": 2, "device": "cpu"}
    path = write_spec(tmp_path, spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bioclf.cli", "run", str(path), "--variant", "full", "--nproc", "2",
                           "--quiet", "--tracking-uri", tracking_uri], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("on 2 processes (DDP)") == 1  # rank 0 alone prints

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`bioclf.variant` = 'full'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["train.world_size"] == "2"
    # docs/distributed.md: steps per epoch = floor(ceil(n_train / world) / batch_size)
    n_train = 4 * 24
    expected = math.ceil(n_train / 2) // 16
    steps = [m.value for m in client.get_metric_history(run.info.run_id, "train_steps")]
    assert steps == [expected] * 2
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2  # one value per epoch, not per rank
    preds = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/val.csv", str(tmp_path)))
    assert len(preds) == 4 * 8 and preds["path"].is_unique
    assert run.data.metrics["best_val_acc"] == pytest.approx((preds["pred"] == preds["label"]).mean())

    # Run again: rank 0 finds the finished run and every rank skips it.
    again = subprocess.run([sys.executable, "-m", "bioclf.cli", "run", str(path), "--variant", "full", "--nproc", "2",
                            "--quiet", "--tracking-uri", tracking_uri], capture_output=True, text=True, env=env,
                           timeout=300, cwd=tmp_path)
    assert again.returncode == 0 and "skipped, finished run" in again.stdout
    assert len(client.search_runs([exp.experiment_id], "tags.`bioclf.variant` = 'full'")) == 1


def test_nproc_exits_with_rank_zeros_code_and_no_traceback(tmp_path, tracking_uri):
    spec = dict(TINY, variants={"full": {}}, baseline="full", train={"epochs": 2, "device": "cpu"},
                optimizer={"name": "sgd", "lr": 1e30, "momentum": 0.0})
    path = write_spec(tmp_path, spec)
    proc = subprocess.run([sys.executable, "-m", "bioclf.cli", "run", str(path), "--nproc", "2", "--quiet",
                           "--tracking-uri", tracking_uri], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert proc.returncode == 1  # a run failed (exit 2 would be bad input)
    assert "FAILED: training loss became nan" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_nproc_errors_are_one_line(tmp_path, capsys):
    from bioclf.cli import main

    path = write_spec(tmp_path, dict(TINY, variants={"full": {}}, baseline="full"))
    assert main(["run", str(path), "--nproc", "0"]) == 2
    assert "--nproc must be at least 1" in capsys.readouterr().err
    assert main(["run", str(path), "--nproc", "2", "--variant", "nope"]) == 2
    assert "--variant 'nope'" in capsys.readouterr().err


def test_ray_flags_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from bioclf.cli import main

    path = write_spec(tmp_path, dict(TINY, variants={"full": {}}, baseline="full"))
    assert main(["run", str(path), "--gpus-per-run", "1"]) == 2
    assert "--gpus-per-run needs --executor ray" in capsys.readouterr().err
    assert main(["run", str(path), "--npr", "2"]) == 2  # no abbreviations: --nproc is spelled out
    assert "unrecognized arguments: --npr" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were not installed
    assert main(["run", str(path), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[ray]'" in err and len(err.strip().splitlines()) == 1
