"""The report's cache: a rebuild redraws only what changed and keeps the rest untouched, removes
what the report no longer has, and its tables are those of the report before the cache existed
(tests/fixtures/report_cache). Generated data, CPU, seconds."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_report_fakestore import fresh_store, write_fake_suite

from analysis.build import BuildOptions, build_report
from analysis.cache import CACHE_FILE, ReportCache, content_key
from analysis.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "report_cache"
FAST = BuildOptions(figure_formats=("png",), workers=1)
# The store the fixture's CSVs were written from (see its README.md).
FIXTURE_SUITE = dict(name="fixture", variants=4, seeds=(0, 1), epochs=8, num_classes=8, per_class=4,
                     status={("v02", 1): "FAILED"}, early_stop={"v03": 6}, drops=(3, 6), seed=12)

PAGES = {"index.md", "index.html"}  # rewritten by every build (their date)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = fresh_store(tmp_path_factory.mktemp("cache-store"))
    return SimpleNamespace(uri=uri, info=write_fake_suite(uri, **FIXTURE_SUITE))


@pytest.fixture(scope="module")
def data(store):
    from analysis.store import StoreReader

    reader = StoreReader(store.uri)
    return reader.load("fixture", reader.latest_suite("fixture"), all_predictions=True)


@pytest.fixture(scope="module")
def built(data, tmp_path_factory):
    """The fixture suite's report, built once; tests rebuild copies of it."""
    folder = tmp_path_factory.mktemp("built") / "fixture"
    return SimpleNamespace(folder=folder, report=build_report(data, folder, FAST))


def _copy(built, tmp_path: Path) -> Path:
    """A copy of the built report, modification times included (what the cache compares)."""
    folder = tmp_path / "fixture"
    shutil.copytree(built.folder, folder, copy_function=shutil.copy2)
    return folder


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(map(str, args)))
    return rc, out.getvalue(), err.getvalue()


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a report but its hidden bookkeeping: relative path -> (mtime_ns, bytes)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _csvs(folder: Path, labels: dict[str, str]) -> dict[str, str]:
    """The report's CSVs, run ids replaced by run labels (ids are random in every store)."""
    tables = {}
    for path in sorted((folder / "tables").glob("*.csv")):
        text = path.read_text()
        for run_id, label in labels.items():
            text = text.replace(run_id, label)
        tables[path.name] = text
    return tables


def _old_columns(got: str, want: str) -> str:
    """``got`` cut to the columns ``want`` has, cells as written (no re-formatting): columns added
    since the fixture (e.g. ``n_shared``) are allowed, changed values are not."""
    rows = list(csv.reader(io.StringIO(got)))
    header = next(csv.reader(io.StringIO(want)))
    keep = [rows[0].index(name) for name in header if name in rows[0]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[row[i] for i in keep] for row in rows])
    return out.getvalue()


def _labels(info) -> dict[str, str]:
    return {run["run_id"]: f"{variant}-seed{seed}" for (variant, seed), run in info["runs"].items()}


# ---------------------------------------------------------------- same numbers as before


def test_tables_equal_those_of_the_report_before_the_cache(store, tmp_path, monkeypatch):
    """In one process (--workers 1), then with the worker pool (the tests computed in a worker,
    the figures drawn there): the same tables as the release before, byte for byte."""
    from analysis import jobs

    started = []
    start = jobs.WorkerPool.start
    monkeypatch.setattr(jobs.WorkerPool, "start", lambda workers=None: started.append(start(workers)) or started[-1])
    for name, workers in (("one", "1"), ("pool", "2")):
        rc, _, err = _cli("--tracking-uri", store.uri, "--out", tmp_path / name, "--no-log", "--workers", workers)
        assert rc == 0, err
    assert started[0] is None
    # the second build used the pool, where it can fork: a process with other threads (a test
    # session that already ran a tracking server or Ray) draws everything itself
    import threading

    assert (started[1] is not None) == (threading.active_count() == 1)
    want = {p.name: p.read_text() for p in sorted(FIXTURE.glob("*.csv"))}
    for name in ("one", "pool"):
        got = _csvs(tmp_path / name / "fixture", _labels(store.info))
        assert sorted(set(got) - set(want)) == ["ablation_cost.csv"]  # new since: the costs in a table of their own
        for table in want:
            assert _old_columns(got[table], want[table]) == want[table], (name, table)
    ablation = pd.read_csv(tmp_path / "one" / "fixture" / "tables" / "ablation.csv")
    assert ablation["verdict"].notna().all() and (ablation["verdict"] == "baseline").sum() == 1


# ---------------------------------------------------------------- what a rebuild redraws


def test_second_build_on_the_same_data_redraws_nothing(data, built, tmp_path):
    first, folder = built.report, _copy(built, tmp_path)
    before = _files(folder)
    second = build_report(data, folder, FAST)
    after = _files(folder)
    assert second.written == [] and sorted(second.kept) == sorted(first.written)
    assert len(first.written) == len(before) - 2  # every file but index.md / .html, rewritten (their date)
    assert sorted(after) == sorted(before)
    for rel in before:
        if rel not in PAGES:
            assert after[rel] == before[rel], rel  # same bytes, same modification time: not rewritten
    manifest = json.loads((folder / CACHE_FILE).read_text())
    assert sorted(manifest["files"]) == sorted(before)


def _with_history_change(data, variant: str, seed: int, column: str, delta: float):
    changed = copy.deepcopy(data)
    run_id = changed.runs.set_index(["variant", "seed"]).loc[(variant, seed), "run_id"]
    h = changed.histories
    last = h[h["run_id"] == run_id]["epoch"].max()
    h.loc[(h["run_id"] == run_id) & (h["epoch"] == last), column] += delta
    return changed


def test_a_changed_history_redraws_only_what_is_drawn_from_it(data, built, tmp_path):
    folder = _copy(built, tmp_path)
    before = _files(folder)
    # v01's second seed: drawn faint in v01's curves, listed in Table 2; not in the overlay (first seeds)
    changed = _with_history_change(data, "v01", 1, "train_loss", 0.5)
    report = build_report(changed, folder, FAST)
    after = _files(folder)
    expected = {"figures/fig1_curves_v01.png", "tables/table2_training_progress.md",
                "tables/table2_training_progress.csv", "tables/table2_training_progress.tex"}
    assert set(report.written) == expected
    for rel in expected:
        assert after[rel][1] != before[rel][1], rel
    for rel in set(before) - expected - PAGES:
        assert after[rel] == before[rel], rel


def test_a_column_a_figure_does_not_draw_does_not_redraw_it(data, built, tmp_path):
    changed = _with_history_change(data, "v00", 0, "epoch_time_s", 7.0)  # in the store, in no figure or table
    report = build_report(changed, _copy(built, tmp_path), FAST)
    assert report.written == []


def test_a_removed_variant_s_files_are_deleted(data, built, tmp_path):
    first, folder = built.report, _copy(built, tmp_path)
    before = _files(folder)
    fewer = copy.deepcopy(data)
    fewer.runs = fewer.runs[fewer.runs["variant"] != "v03"].reset_index(drop=True)
    fewer.variants = [v for v in fewer.variants if v != "v03"]
    report = build_report(fewer, folder, FAST)
    assert "figures/fig1_curves_v03.png" in report.stale_removed
    assert not (folder / "figures" / "fig1_curves_v03.png").exists()
    manifest = json.loads((folder / CACHE_FILE).read_text())
    assert "figures/fig1_curves_v03.png" not in manifest["files"]
    assert sorted(manifest["files"]) == sorted(_files(folder))
    for variant in ("v00", "v01", "v02"):  # their curves did not change: kept
        rel = f"figures/fig1_curves_{variant}.png"
        assert rel in report.kept and (folder / rel).stat().st_mtime_ns == before[rel][0]
    assert "figures/fig1_val_acc_all_variants.png" in report.written  # one line fewer
    assert "tables/ablation.csv" in report.written
    assert len(report.files) < len(first.files)


def test_a_file_changed_by_hand_is_redrawn(data, built, tmp_path):
    folder = _copy(built, tmp_path)
    (folder / "figures" / "fig1_curves_v02.png").write_bytes(b"not a png")
    (folder / "tables" / "ablation.md").unlink()
    report = build_report(data, folder, FAST)
    assert set(report.written) == {"figures/fig1_curves_v02.png", "tables/ablation.md"}
    assert (folder / "figures" / "fig1_curves_v02.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / "tables" / "ablation.md").exists()


def test_pdf_on_request_keeps_the_pngs(data, built, tmp_path):
    first, folder = built.report, _copy(built, tmp_path)
    assert not any(rel.endswith(".pdf") for rel in first.written)
    report = build_report(data, folder, BuildOptions(figure_formats=("png", "pdf"), workers=1))
    assert report.written and all(rel.endswith(".pdf") for rel in report.written)
    assert {rel[:-4] for rel in report.written} == {rel[:-4] for rel in first.written if rel.endswith(".png")}
    assert (folder / report.written[0]).read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------- the CLI on a store


@pytest.fixture
def small_store(tmp_path):
    uri = fresh_store(tmp_path / "store")
    return SimpleNamespace(uri=uri, info=write_fake_suite(uri, name="small", variants=3, epochs=6, num_classes=6,
                                                          seed=4), out=tmp_path / "reports")


def test_cli_second_call_keeps_the_report_and_a_logged_metric_rewrites_only_its_table(small_store):
    s = small_store
    rc, first_out, _ = _cli("--tracking-uri", s.uri, "--out", s.out, "--workers", "1")
    assert rc == 0 and "logged to suite run" in first_out
    folder = s.out / "small"
    before = _files(folder)

    rc, second_out, second_err = _cli("--tracking-uri", s.uri, "--out", s.out, "--workers", "1")
    assert rc == 0 and "nothing changed since the last report" in second_err
    assert second_out == first_out and _files(folder) == before  # not even index.md rewritten

    from mlflow.tracking import MlflowClient

    run_id = s.info["runs"][("v01", 0)]["run_id"]
    MlflowClient(tracking_uri=s.uri).log_metric(run_id, "peak_rss_mb", 1234.5)
    rc, _, third_err = _cli("--tracking-uri", s.uri, "--out", s.out, "--workers", "1")
    assert rc == 0 and "nothing changed" not in third_err
    after = _files(folder)
    rewritten = {rel for rel in before if after[rel] != before[rel]}
    # the ablation table holds the raw cost values too (its CSV), the cost table shows them
    assert rewritten == PAGES | {f"tables/{t}.{e}" for t in ("ablation", "ablation_cost") for e in ("md", "csv", "tex")}
    ablation = pd.read_csv(folder / "tables" / "ablation.csv").set_index("variant")
    assert ablation.loc["v01", "peak_rss_mb_mean"] == 1234.5


def test_cli_redraws_a_deleted_figure_and_only_it(small_store):
    s = small_store
    assert _cli("--tracking-uri", s.uri, "--out", s.out, "--no-log", "--workers", "1")[0] == 0
    folder = s.out / "small"
    before = _files(folder)
    (folder / "figures" / "fig1_curves_v02.png").unlink()
    rc, _, err = _cli("--tracking-uri", s.uri, "--out", s.out, "--no-log", "--workers", "1")
    assert rc == 0 and "drawing 1 figure(s)" in err
    after = _files(folder)
    assert {rel for rel in before if after[rel][0] != before[rel][0]} == PAGES | {"figures/fig1_curves_v02.png"}


def test_cli_without_log_then_with_log_logs(small_store):
    """A report kept by --no-log is not current for a call that must log it to the store."""
    s = small_store
    assert _cli("--tracking-uri", s.uri, "--out", s.out, "--no-log", "--workers", "1")[0] == 0
    rc, out, err = _cli("--tracking-uri", s.uri, "--out", s.out, "--workers", "1")
    assert rc == 0 and "logged to suite run" in out and "nothing changed" not in err
    rc, _, err = _cli("--tracking-uri", s.uri, "--out", s.out, "--no-log", "--workers", "1")
    assert rc == 0 and "nothing changed" in err


def test_cli_call_with_nothing_changed_imports_neither_mlflow_nor_matplotlib(small_store):
    s = small_store
    args = ["--tracking-uri", s.uri, "--out", str(s.out), "--workers", "1"]
    rc, first_out, _ = _cli(*args)
    assert rc == 0
    code = ("import sys; from analysis.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('mlflow', 'matplotlib', 'pandas', 'scipy') if m in sys.modules)); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *lines, modules = done.stdout.splitlines()
    assert modules == "[]"
    assert "\n".join(lines) + "\n" == first_out


# ---------------------------------------------------------------- the pieces


def test_content_key_reads_values_exactly():
    frame = pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.1, 0.2, 0.3], "name": ["a", "b", None]})
    key = content_key("f", frame)
    assert content_key("f", frame.copy()) == key
    nudged = frame.copy()
    nudged.loc[1, "val_acc"] = np.nextafter(0.2, 1)  # one unit in the last place
    assert content_key("f", nudged) != key
    assert content_key("f", frame.rename(columns={"val_acc": "val_loss"})) != key
    assert content_key("f", frame.astype({"epoch": float})) != key
    assert content_key("f", frame[["val_acc", "epoch", "name"]]) != key
    assert content_key("f", frame.assign(name=["a", "b", "c"])) != key
    assert content_key({"a": 1, "b": 2}) != content_key({"b": 2, "a": 1})  # order: a legend's order
    assert content_key(("ab", "c")) != content_key(("a", "bc"))
    assert content_key(np.arange(4)) != content_key(np.arange(4).astype(np.int32))
    with pytest.raises(TypeError):
        content_key(object())


def test_manifest_that_cannot_be_read_means_everything_is_redrawn(data, built, tmp_path):
    folder = _copy(built, tmp_path)
    (folder / CACHE_FILE).write_text("{not json")
    assert ReportCache.read(folder).files == {}
    report = build_report(data, folder, FAST)
    assert report.kept == [] and len(report.written) == len(report.files) - len(PAGES)


def test_macro_scores_equal_scikit_learn_bit_for_bit():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from analysis import classwise

    rng = np.random.default_rng(0)
    for _ in range(300):
        k, n = int(rng.integers(1, 60)), int(rng.integers(1, 300))
        y = rng.integers(0, k, n)
        p = np.where(rng.uniform(size=n) < rng.uniform(), y, rng.integers(0, k + 2, n))  # some never-true labels
        frame = pd.DataFrame({"label": y, "pred": p, "top5": [str(v) for v in p]})
        want = precision_recall_fscore_support(y, p, labels=np.unique(y), average="macro", zero_division=0)
        got = classwise.macro_scores(frame)
        assert (got["val_precision_macro"], got["val_recall_macro"], got["val_f1_macro"]) == tuple(want[:3])
        m = int(max(y.max(), p.max())) + 1
        counts = classwise.confusion_counts(frame, m)
        assert counts.dtype == np.int64
        np.testing.assert_array_equal(counts, confusion_matrix(y, p, labels=np.arange(m)))


def _exit_unless_in(pid: int) -> str:
    """A job that kills the worker it runs in (as the out-of-memory killer would)."""
    import os

    if os.getpid() != pid:
        os._exit(1)
    return "done here"


def test_worker_pool_does_the_jobs_of_killed_workers_itself():
    import os
    import signal

    from analysis.jobs import WorkerPool

    pool = WorkerPool.start(2)
    if pool is None:
        pytest.skip("this process cannot fork safely (threads running)")
    try:
        assert pool.call(_exit_unless_in, os.getpid())() == "done here"  # its worker died: done here
        os.kill(pool._process.pid, signal.SIGKILL)  # the pool's first process killed: every job done here
        assert pool.call(_exit_unless_in, os.getpid())() == "done here"
    finally:
        pool.close()
    assert not pool._process.is_alive()
