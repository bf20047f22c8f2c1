"""The benchmark scripts keep working: each runs in its --tiny mode (CPU, seconds)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_data_pipeline_tiny(bench, capsys):
    import torch

    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    result = bench("data_pipeline").main(["--tiny"])
    # It times on one thread; the test process gets its settings back (later tests compare
    # results against other processes, which a changed thread count would break).
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    out = capsys.readouterr().out
    for name in ("report v1", "reference v2", "reference + cache", "device on the CPU", "device: workers' share",
                 "device: workers' share + cache"):
        assert name in out
        assert result["rows"][name]["ips"][0] > 0
    assert result["rows"]["report v1"]["ratio"] == [1.0]


def test_data_pipeline_reads_any_folder(bench, tmp_path, capsys):
    module = bench("data_pipeline")
    import numpy as np

    rng = np.random.default_rng(0)
    for i, ext in enumerate(("jpg", "png", "JPEG")):
        (tmp_path / "nested").mkdir(exist_ok=True)
        module.make_photo(rng, 80, 60).save(tmp_path / "nested" / f"{i}.{ext}")
    result = module.main(["--tiny", "--folder", str(tmp_path), "--n", "3"])
    assert "3 images" in result["images"]


def test_tracking_overhead_tiny(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'unused.db'}")
    result = bench("tracking_overhead").main(["--tiny"])
    out = capsys.readouterr().out
    assert "MLflow log_epoch per epoch" in out
    assert result["per_epoch_log_s"] > 0 and result["epoch_s"] > 0


def test_gpu_tiny(bench, capsys):
    """Compute-only, loader-fed (both pipelines, two batch sizes) and a real 2-row suite with
    its report, whose per-epoch rows come from the store."""
    rows = bench("gpu").main(["--tiny", "--steps", "1"])
    out = capsys.readouterr().out
    assert "GFLOP per training image" in out
    measured = {(row.what.split(",")[0], row.batch) for row in rows if row.images_per_s}
    for batch in (8, 16):
        assert {("compute only", batch), ("fed: reference", batch), ("fed: device", batch)} <= measured
    fed = [row for row in rows if row.what.startswith("fed:")]
    assert all("fed / compute-only" in row.note and "loader wait" in row.note for row in fed)
    suite = [row for row in rows if row.what.startswith("suite ")]
    assert len(suite) == 4 and all(row.images_per_s > 0 and "data_time share" in row.note for row in suite)
    assert "bioclf-report" in out and "device" in out.split("suite:")[-1]


def test_startup_tiny(bench, capsys):
    median = bench("startup").main(["--tiny"])
    out = capsys.readouterr().out
    assert "target <= 0.5 s" in out and "of importing MLflow" in out
    assert all(seconds > 0 for seconds in median.values())
    # the commands that import neither torch nor MLflow take less than importing torch
    assert median["bioclf-exp validate"] < median["import torch"]


def test_taxonomy_tiny(bench, capsys):
    """Two rows of the taxonomy suite trained an epoch, read back as the report reads them."""
    result = bench("taxonomy").main(["--tiny"])
    out = capsys.readouterr().out
    summary, deltas = result["summary"], result["deltas"]
    assert list(zip(summary["variant"], summary["ranking"])) == [
        ("cross_entropy", "as trained"), ("cross_entropy", "CRM"), ("hxe_a0.5", "as trained"), ("hxe_a0.5", "CRM")]
    assert set(zip(deltas["variant"], deltas["ranking"])) == {("cross_entropy", "CRM"), ("hxe_a0.5", "as trained"),
                                                              ("hxe_a0.5", "CRM")}
    assert ((summary["class_acc"] >= 0) & (summary["class_acc"] <= 1)).all()
    assert "| hxe_a0.5 | as trained | 1 |" in out and "Δ: each row minus cross_entropy" in out


def test_folds_tiny(bench, capsys):
    """The same pair judged on the val split and out of fold: the fold suite scores every
    labelled image (4 classes x 13), the val split only its 4 x 3."""
    result = bench("folds").main(["--tiny"])
    out = capsys.readouterr().out
    val, folds = result["results"]["val split"], result["results"]["2 folds"]
    assert (val["images"], folds["images"]) == (12, 52)
    assert folds["acc_ci"][0] <= folds["acc"] <= folds["acc_ci"][1]
    assert "| 2 folds | 52 |" in out and "narrower with folds" in out
