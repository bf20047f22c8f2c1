"""A fake suite written straight into a tracking store (no training), and the store reader's
handling of what real stores hold: failed / unfinished / missing runs, runs without
history.csv or predictions, an older suite without suite.json, several seeds.

``write_fake_suite`` follows docs/tracking.md; ``benchmarks/report_speed.py`` uses it too.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bioclf.tracking import contract as C
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from sklearn.metrics import precision_recall_fscore_support

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5_acc", "lr", "epoch_time_s",
              "train_images_per_s")


_TEMPLATE: dict[str, Path] = {}


def fresh_store(folder: Path) -> str:
    """A new, empty SQLite store in ``folder`` (URI returned). MLflow takes seconds to create and
    migrate a database; it is done once per test session and the file copied after that."""
    if "db" not in _TEMPLATE:
        folder_of_template = tempfile.mkdtemp(prefix="bioclf-report-template-")
        atexit.register(shutil.rmtree, folder_of_template, ignore_errors=True)  # not one left per session
        template = Path(folder_of_template) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _TEMPLATE["db"] = template
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE["db"], folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def fake_history(rng, epochs: int, ceiling: float, drops=(20, 35), lr0: float = 1e-3) -> pd.DataFrame:
    """Curves that rise towards ``ceiling``; the LR falls x0.2 at each epoch of ``drops``."""
    e = np.arange(1, epochs + 1)
    lr = np.full(epochs, lr0)
    for d in drops:
        lr[e >= d] *= 0.2
    val_acc = np.clip(ceiling * (1 - np.exp(-e / 6)) + rng.normal(0, 0.01, epochs), 0, 1)
    return pd.DataFrame({
        "epoch": e, "train_loss": 3.5 * np.exp(-e / 8) + 0.4, "train_acc": np.clip(val_acc + 0.05, 0, 1),
        "val_loss": 3.0 * np.exp(-e / 9) + 0.7 + rng.normal(0, 0.01, epochs), "val_acc": val_acc,
        "val_top5_acc": np.clip(val_acc + 0.1, 0, 1), "lr": lr, "epoch_time_s": rng.uniform(50, 60, epochs),
        "train_images_per_s": rng.uniform(350, 400, epochs),
    })


def fake_predictions(rng, num_classes: int, per_class: int, accuracy: float) -> pd.DataFrame:
    labels = np.repeat(np.arange(num_classes), per_class)
    hard = rng.uniform(0.5, 1.5, num_classes)[labels]  # some classes harder than others
    correct = rng.uniform(size=len(labels)) < np.clip(accuracy / hard, 0, 1)
    # Mistakes go mostly to the "next" class: a few asymmetric pairs, as in real confusions.
    wrong = np.where(rng.uniform(size=len(labels)) < 0.7, (labels + 1) % num_classes,
                     rng.integers(0, num_classes, len(labels)))
    pred = np.where(correct, labels, wrong)
    top5 = [" ".join(str((p + i) % num_classes) for i in range(min(5, num_classes))) for p in pred]
    return pd.DataFrame({"path": [f"val/{lab}/{i:05d}.jpg" for i, lab in enumerate(labels)], "label": labels,
                         "pred": pred, "top5": top5, "p_label": np.where(correct, 0.8, 0.1), "p_pred": 0.8})


def final_metrics(pred: pd.DataFrame, history: pd.DataFrame) -> dict[str, float]:
    """The summary the trainer logs, computed the trainer's way (sklearn macro over present labels)."""
    y, p = pred["label"].to_numpy(), pred["pred"].to_numpy()
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=np.unique(y), average="macro", zero_division=0)
    best = int(history.loc[history["val_acc"].idxmax(), "epoch"])
    top5 = np.mean([str(lab) in t.split() for lab, t in zip(y, pred["top5"])])
    return {"best_val_acc": float((y == p).mean()), "best_val_top5_acc": float(top5),
            "best_val_loss": float(history["val_loss"].min()), "val_f1_macro": float(f1),
            "val_precision_macro": float(prec), "val_recall_macro": float(rec), "best_epoch": float(best),
            "epochs_run": float(len(history)), "train_time_s": float(history["epoch_time_s"].sum())}


def _log_text_file(client, run_id: str, frame: pd.DataFrame, artifact: str) -> None:
    client.log_text(run_id, frame.to_csv(index=False), artifact)


def write_fake_suite(uri: str, *, name: str = "fake", variants: int = 3, seeds=(0,), epochs: int = 12,
                     num_classes: int = 10, per_class: int = 4, history_csv: bool = True, suite_json: bool = True,
                     status: dict | None = None, no_predictions: tuple = (), not_run: tuple = (),
                     early_stop: dict | None = None, class_names: bool = True, drops=(5, 9), seed: int = 0) -> dict:
    """A suite run and its children as bioclf writes them. ``status[(variant, seed)]`` overrides
    FINISHED (FAILED / RUNNING / KILLED runs log only part of their history and no summary);
    ``not_run`` rows are in suite.json but have no run; ``early_stop[variant]`` = last epoch."""
    rng = np.random.default_rng(seed)
    status, early_stop = status or {}, early_stop or {}
    client = MlflowClient(tracking_uri=uri)
    art_root = Path(uri[len("sqlite:///"):]).parent / "artifacts" if uri.startswith("sqlite:///") else None
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=(art_root / name).as_uri() if art_root else None)
    names = [f"v{i:02d}" for i in range(variants)]
    baseline = names[0]
    suite = client.create_run(exp_id, run_name=f"suite {name}", tags={
        C.ROLE: "suite", C.SUITE_HASH: f"suite{seed}", C.BASELINE: baseline,
        C.VARIANTS: json.dumps(names), C.CONTRACT: "1"}).info.run_id
    rows = [{"variant": v, "seed": s, "config_hash": f"{name}{v}s{s}"[-12:].rjust(12, "0")} for v in names
            for s in seeds]
    if suite_json:
        client.log_text(suite, json.dumps({"name": name, "description": "fake suite", "baseline": baseline,
                                           "seeds": list(seeds), "variants": names, "runs": rows,
                                           "diffs": {v: ({} if v == baseline else {"model.head.hidden_dim": [512, 64 * i]})
                                                     for i, v in enumerate(names)}}), "suite.json")
    classes = pd.DataFrame({"label": range(num_classes), "folder": [str(i) for i in range(num_classes)],
                            "name": [f"Species {i:03d}" if class_names else str(i) for i in range(num_classes)]})
    info = {"suite_id": suite, "experiment": name, "runs": {}, "baseline": baseline, "variants": names}
    for i, row in enumerate(rows):
        key = (row["variant"], row["seed"])
        if key in not_run:
            continue
        st = status.get(key, "FINISHED")
        n_epochs = early_stop.get(row["variant"], epochs) if st == "FINISHED" else max(2, epochs // 3)
        hist = fake_history(rng, n_epochs, 0.6 + 0.3 * rng.uniform(), drops)
        pred = fake_predictions(rng, num_classes, per_class, float(hist["val_acc"].max()))
        run = client.create_run(exp_id, run_name=f"{row['variant']}-seed{row['seed']}", tags={
            "mlflow.parentRunId": suite, C.ROLE: "variant", C.VARIANT: row["variant"],
            C.SEED: str(row["seed"]), C.CONFIG_HASH: row["config_hash"],
            C.SUITE_HASH: f"suite{seed}", C.CONTRACT: "1",
            **({C.ERROR: "RuntimeError: CUDA out of memory"} if st == "FAILED" else {})})
        rid = run.info.run_id
        params = {"model.backbone": "resnet50", "model.num_params": 23_500_000 + 1000 * i,
                  "model.num_trainable_params": 23_500_000 + 1000 * i, "data.num_classes": num_classes,
                  "train.epochs": epochs, "loss.label_smoothing": 0.1}
        client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(r[k]), now + int(r["epoch"]), int(r["epoch"])) for _, r in hist.iterrows()
                   for k in EPOCH_KEYS]
        for start in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[start:start + 1000])
        summary = final_metrics(pred, hist)
        if st == "FINISHED":
            client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in summary.items()])
            _log_text_file(client, rid, classes, "classes.csv")
            if history_csv:
                _log_text_file(client, rid, hist, "history.csv")
            if key not in no_predictions:
                _log_text_file(client, rid, pred, "predictions/val.csv")
        client.set_terminated(rid, status=st)
        info["runs"][key] = {"run_id": rid, "status": st, "history": hist, "predictions": pred,
                             "summary": summary if st == "FINISHED" else {}, "num_params": params["model.num_params"]}
    client.set_terminated(suite, status="FAILED" if any(v["status"] == "FAILED" for v in info["runs"].values())
                          else "FINISHED")
    return info


# ---------------------------------------------------------------- tests of analysis.store


@pytest.fixture(scope="module")
def fake_uri(tmp_path_factory):
    return fresh_store(tmp_path_factory.mktemp("fakestore"))


@pytest.fixture(scope="module")
def mixed(fake_uri):
    """Two seeds; a failed, a running and a not-run row; one run without history.csv would need
    a second suite, so the history fallback has its own suite (``no_history``)."""
    return write_fake_suite(
        fake_uri, name="mixed", variants=4, seeds=(1, 2), epochs=12,
        status={("v01", 2): "FAILED", ("v02", 1): "RUNNING"}, not_run=(("v03", 2),),
        early_stop={"v03": 10}, no_predictions=(),
    )


@pytest.fixture(scope="module")
def no_history(fake_uri):
    return write_fake_suite(fake_uri, name="nohist", variants=2, epochs=6, history_csv=False, seed=3,
                            no_predictions=(("v00", 0),))


@pytest.fixture(scope="module")
def old_store(fake_uri):
    return write_fake_suite(fake_uri, name="old", variants=3, epochs=4, suite_json=False, seed=5)


def _load(uri, experiment):
    from analysis.store import StoreReader

    reader = StoreReader(uri)
    return reader.load(experiment, reader.latest_suite(experiment))


def test_rows_follow_the_suite_and_keep_every_status(fake_uri, mixed):
    data = _load(fake_uri, "mixed")
    runs = data.runs
    assert list(zip(runs["variant"], runs["seed"])) == [(v, s) for v in mixed["variants"] for s in (1, 2)]
    status = dict(zip(zip(runs["variant"], runs["seed"]), runs["status"]))
    assert status[("v01", 2)] == "FAILED" and status[("v02", 1)] == "RUNNING" and status[("v03", 2)] == "NOT RUN"
    failed = runs[runs["status"] == "FAILED"].iloc[0]
    assert failed["error"] == "RuntimeError: CUDA out of memory" and np.isnan(failed["best_val_acc"])
    done = runs[runs["status"] == "FINISHED"]
    for _, r in done.iterrows():
        truth = mixed["runs"][(r["variant"], r["seed"])]
        assert r["run_id"] == truth["run_id"]
        assert r["best_val_acc"] == truth["summary"]["best_val_acc"]
        assert r["num_params"] == truth["num_params"]
        assert r["max_epochs"] == 12


def test_histories_equal_what_was_logged(fake_uri, mixed):
    data = _load(fake_uri, "mixed")
    for key, truth in mixed["runs"].items():
        got = data.history_of(truth["run_id"]).drop(columns="run_id")
        pd.testing.assert_frame_equal(got[truth["history"].columns], truth["history"], check_dtype=False)


def test_predictions_of_every_finished_run_on_request(fake_uri, mixed):
    from analysis.store import StoreReader

    reader = StoreReader(fake_uri)
    default = reader.load("mixed", reader.latest_suite("mixed"))
    assert len(default.predictions) <= 2  # the baseline's first seed and the best run only
    data = reader.load("mixed", reader.latest_suite("mixed"), all_predictions=True)
    finished = {r["run_id"]: r for r in mixed["runs"].values() if r["status"] == "FINISHED"}
    assert set(data.predictions) == set(finished)
    for rid, frame in data.predictions.items():
        pd.testing.assert_frame_equal(frame, finished[rid]["predictions"], check_dtype=False)


def test_history_fallback_reads_metric_histories(fake_uri, no_history):
    data = _load(fake_uri, "nohist")
    assert any("history.csv missing for 2 finished run(s)" in n for n in data.notes)
    for truth in no_history["runs"].values():
        got = data.history_of(truth["run_id"])
        want = truth["history"]
        assert list(got["epoch"]) == list(want["epoch"])
        for key in EPOCH_KEYS:
            np.testing.assert_allclose(got[key].to_numpy(), want[key].to_numpy())


def test_missing_predictions_is_a_note_not_a_crash(fake_uri, no_history):
    data = _load(fake_uri, "nohist")
    base = no_history["runs"][("v00", 0)]["run_id"]
    assert base not in data.predictions
    assert any("predictions/val.csv missing" in n and base in n for n in data.notes)


def test_store_without_suite_json_falls_back_to_children(fake_uri, old_store):
    data = _load(fake_uri, "old")
    assert any("suite.json is missing" in n for n in data.notes)
    assert list(data.runs["variant"]) == old_store["variants"]
    assert data.baseline == "v00"
    assert set(data.runs["status"]) == {"FINISHED"}


def test_unknown_experiment_and_suite_are_report_errors(fake_uri, mixed):
    from analysis.errors import ReportError
    from analysis.store import StoreReader

    reader = StoreReader(fake_uri)
    with pytest.raises(ReportError, match="no experiment 'nope'.*mixed"):
        reader.latest_suite("nope")
    with pytest.raises(ReportError, match="no such run"):
        reader.suite_by_id("0" * 32)
    child = mixed["runs"][("v00", 1)]["run_id"]
    with pytest.raises(ReportError, match="not a suite run"):
        reader.suite_by_id(child)


def test_missing_sqlite_store_is_not_created(tmp_path):
    from analysis.errors import ReportError
    from analysis.store import StoreReader

    with pytest.raises(ReportError, match="no tracking store"):
        StoreReader(f"sqlite:///{tmp_path}/none/mlflow.db")
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------- the CLI on the fake store


@pytest.fixture(scope="module")
def cli_all(fake_uri, mixed, no_history, old_store, tmp_path_factory):
    """One ``bioclf-report`` over the whole fake store: the default is every experiment with a suite."""
    import contextlib
    import io

    from analysis.cli import main

    out = tmp_path_factory.mktemp("cli")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["--tracking-uri", fake_uri, "--out", str(out), "--figure-formats", "png"])
    return rc, out, stdout.getvalue(), stderr.getvalue()


def test_cli_reports_every_experiment_with_a_suite(cli_all):
    rc, out, stdout, stderr = cli_all
    assert rc == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["mixed", "nohist", "old"]
    assert all((out / name / "index.md").exists() for name in ("mixed", "nohist", "old"))


def test_cli_marks_failed_running_and_missing_runs(cli_all, mixed):
    _, out, _, _ = cli_all
    ablation = pd.read_csv(out / "mixed" / "tables" / "ablation.csv").set_index("variant")
    assert list(ablation.index) == mixed["variants"]
    assert ablation.loc["v01", "status"] == "1/2 finished; 1 failed"
    assert ablation.loc["v02", "status"] == "1/2 finished; 1 running"
    assert ablation.loc["v03", "status"] == "1/2 finished; 1 not run"
    runs = mixed["runs"]
    assert ablation.loc["v00", "val_acc_mean"] == pytest.approx(
        np.mean([runs[("v00", s)]["summary"]["best_val_acc"] for s in (1, 2)]))
    assert ablation.loc["v00", "n_finished"] == 2
    index = (out / "mixed" / "index.md").read_text()
    assert "v01 seed 2: failed" in index and "RuntimeError: CUDA out of memory" in index
    assert "v03 seed 2: not run" in index
    assert (out / "mixed" / "tables" / "table3_overall_metrics_mean.csv").exists()  # several seeds
    progress = pd.read_csv(out / "mixed" / "tables" / "table2_training_progress.csv")
    events = " / ".join(progress["event"])
    assert "last (running)" in events and "last (failed)" in events and "early stop" in events


def test_cli_builds_what_it_can_when_artifacts_are_missing(cli_all, no_history):
    _, out, stdout, _ = cli_all
    figures = {p.name for p in (out / "nohist" / "figures").iterdir()}
    assert not any("baseline_v00" in name for name in figures)  # its predictions are missing
    assert "fig1_curves_v00.png" in figures  # curves came from the metric histories
    assert "predictions/val.csv missing" in stdout and "history.csv missing" in stdout


def test_cli_empty_store_unknown_experiment_and_bad_suite_exit_2(fake_uri, tmp_path, capsys):
    from analysis.cli import main

    empty = fresh_store(tmp_path / "empty")
    assert main(["--tracking-uri", empty, "--out", str(tmp_path / "a")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert main(["--tracking-uri", fake_uri, "--experiment", "nope", "--out", str(tmp_path / "b")]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert main(["--tracking-uri", fake_uri, "--suite", "f" * 32, "--out", str(tmp_path / "c")]) == 2
    assert "no such run" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_a_partial_suite_says_not_run_plainly(fake_uri, tmp_path):
    """A variant the suite has not trained yet is "not run" in the ablation table's verdict and
    status, and the report does not look for its curves ("no per-epoch history")."""
    from analysis.build import BuildOptions, build_report

    write_fake_suite(fake_uri, name="partial", variants=3, epochs=4, not_run=(("v02", 0),), seed=7)
    data = _load(fake_uri, "partial")
    report = build_report(data, tmp_path / "partial", BuildOptions(workers=1))
    ablation = pd.read_csv(tmp_path / "partial" / "tables" / "ablation.csv").set_index("variant")
    assert ablation.loc["v02", "status"] == "not run" and ablation.loc["v02", "verdict"] == "not run"
    assert ablation.loc["v01", "verdict"] in {"better", "worse", "within noise"}
    assert not any("v02" in note and "history" in note for note in report.notes)
    assert "fig1_curves_v02.png" not in {p.name for p in report.files}
