"""Read a suite back from the tracking store; log a report back to it.

The only module of ``analysis`` that reads the store. Every name it reads is in
docs/tracking.md. A local SQLite store whose artifacts are local folders is read through
``bioclf.tracking.sqlite_view`` (MLflow's own tables, read-only, without importing MLflow: its
import and store cost ~3.5 s of CPU, most of a small report's time); anything else, and
anything the view is not sure of (``Unsure``), goes through ``MlflowClient`` and artifact
repositories, so a remote tracking server (``http://...``) is read exactly like the local
store. Both give the same ``StoredRun`` values (tests/test_report_view.py). The report is logged
back the same way: ``bioclf.tracking.sqlite_log`` writes what MLflow would for a local store of
a schema it was checked against (tests/test_sqlite_log.py), MLflow does it for any other.

Cost through MLflow: one search for the suite runs, one (paged) search for the experiment's
variant runs, one ``suite.json`` download, then per run of the suite one ``history.csv``
download (in a thread pool); only runs without that artifact (older or unfinished runs) cost
one ``get_metric_history`` call per metric, also pooled. Through the view: a few queries, and
artifacts are read where they lie.
"""

from __future__ import annotations

import os

# MLflow draws a tqdm bar per artifact download; a report reads dozens of small files.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import unquote  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.errors import ReportError  # noqa: E402
from analysis.suite import EPOCH_METRICS, FINAL_METRICS, NOT_RUN, SuiteData, figure_runs, run_label  # noqa: E402
from bioclf.errors import BioclfError  # noqa: E402
from bioclf.tracking import contract as C  # noqa: E402
from bioclf.tracking.records import StoredRun  # noqa: E402
from bioclf.tracking.sqlite_log import StoreLog  # noqa: E402
from bioclf.tracking.sqlite_view import StoreView, Unsure  # noqa: E402
from bioclf.tracking.uri import check_server, resolve_tracking_uri  # noqa: E402

ROLE, PARENT = C.ROLE, C.PARENT_RUN
WORKERS = 8  # artifact downloads and metric histories are I/O bound (HTTP or SQLite)
_UNREADABLE = (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError)


class _MlflowSource:
    """The store through MLflow: what ``StoreView`` answers, for any store MLflow can open."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiments(self) -> dict[str, str]:
        from mlflow.entities import ViewType

        found, token = {}, None
        while True:
            page = self.client.search_experiments(ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            found.update({e.experiment_id: e.name for e in page})
            token = page.token
            if not token:
                return found

    def experiment_by_name(self, name: str) -> tuple[str, str] | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else (exp.experiment_id, exp.lifecycle_stage)

    def experiment_name(self, experiment_id: str) -> str | None:
        return self.client.get_experiment(experiment_id).name

    def runs_with_tag(self, experiment_ids: list[str], key: str, value: str) -> list[StoredRun]:
        """Every active run matching, newest first (paged: a search returns at most 1000)."""
        from mlflow.entities import ViewType

        found, token = [], None
        while True:
            page = self.client.search_runs(experiment_ids, f"tags.`{key}` = '{value}'", ViewType.ACTIVE_ONLY,
                                           max_results=1000, order_by=["attributes.start_time DESC"],
                                           page_token=token)
            found.extend(_stored(run) for run in page)
            token = page.token
            if not token:
                return found

    def run(self, run_id: str) -> StoredRun | None:
        from mlflow.exceptions import MlflowException

        try:
            return _stored(self.client.get_run(run_id))
        except MlflowException:
            return None

    def metric_history(self, run_id: str, key: str) -> list[tuple[str, int, int, float]]:
        return [(m.key, m.step, m.timestamp, m.value) for m in self.client.get_metric_history(run_id, key)]

    @contextmanager
    def artifact(self, run: StoredRun, path: str):
        """The run's artifact ``path`` downloaded to a temporary file (None when it cannot be)."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="bioclf-report-") as tmp, \
                _repository(run.artifact_uri, self.uri) as repo:
            try:
                local = Path(repo.download_artifacts(path, tmp))
            except (MlflowException, *_UNREADABLE):
                local = None
            yield local


    def log_report(self, suite_run_id: str, folder: Path, subfolders: list[str], files: list[str]) -> None:
        """What ``MlflowClient.log_artifacts`` does, through a repository of our own: the client
        caches its repositories and their upload threads, which would keep the next suite's
        figures from being drawn in forked processes (see analysis.jobs)."""
        uri = self.client.get_run(suite_run_id).info.artifact_uri
        with _repository(uri, self.uri) as repo:
            for sub in subfolders:
                if (folder / sub).is_dir():
                    repo.log_artifacts(str(folder / sub), f"report/{sub}")
            for name in files:
                repo.log_artifact(str(folder / name), "report")

    def log_batch(self, run_id: str, metrics: list[tuple[str, float, int, int]], tags: dict[str, str]) -> None:
        """``metrics``: (key, value, timestamp ms, step); at most 1000 per call, as MLflow takes them."""
        from mlflow.entities import Metric, RunTag

        rows = [Metric(*m) for m in metrics]
        for start in range(0, max(len(rows), 1), 1000):
            self.client.log_batch(run_id, metrics=rows[start:start + 1000],
                                  tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [])


def suite_table_batch(table: pd.DataFrame, now_ms: int) -> tuple[list[tuple[str, float, int, int]], dict[str, str]]:
    """The ablation table's metrics (key, value, timestamp, step 0) and verdict tags, per variant."""
    metrics, tags = [], {}
    for _, row in table.iterrows():
        variant = str(row["variant"])
        for name in C.SUITE_TABLE_METRICS:
            value = row.get(name)
            if value is not None and pd.notna(value):
                metrics.append((C.suite_table_metric(variant, name), float(value), now_ms, 0))
        if pd.notna(row.get("verdict")):
            tags[C.VERDICT_PREFIX + variant] = str(row["verdict"])
    return metrics, tags


def _stored(run) -> StoredRun:
    info, data = run.info, run.data
    return StoredRun(info.run_id, info.experiment_id, info.status, info.run_name, info.start_time, info.end_time,
                     info.artifact_uri, dict(data.tags), dict(data.params), dict(data.metrics))


class StoreReader:
    """The suites of one tracking store, read into ``SuiteData``."""

    def __init__(self, tracking_uri: str | None = None):
        self.uri = resolve_tracking_uri(tracking_uri)
        # Opening a SQLite URI creates the database: a report must not conjure an empty store.
        if self.uri.startswith("sqlite:///"):
            db = Path(unquote(self.uri[len("sqlite:///"):]))
            if not db.exists():
                raise ReportError(f"no tracking store at {db} (run bioclf-exp run SPEC first, or pass --tracking-uri)")
        if self.uri.startswith(("http://", "https://")):
            try:
                check_server(self.uri)
            except BioclfError as exc:
                raise ReportError(str(exc)) from None
        self._view = StoreView.open(self.uri)
        self._mlflow: _MlflowSource | None = None
        self._mlflow_lock = threading.Lock()

    @property
    def read_through(self) -> str:
        """Who answers: "sqlite" (the view) or "mlflow"."""
        return "sqlite" if self._view is not None else "mlflow"

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None

    def _ask(self, question: str, *args):
        """The view's answer, else (no view, or it is not sure) MLflow's."""
        if self._view is not None:
            try:
                return getattr(self._view, question)(*args)
            except Unsure:
                pass
        return getattr(self._through_mlflow(), question)(*args)

    def _through_mlflow(self) -> _MlflowSource:
        with self._mlflow_lock:  # asked from the reading threads too: one client, not one each
            if self._mlflow is None:
                self._mlflow = _MlflowSource(self.uri)
            return self._mlflow

    # ------------------------------------------------------------ suites

    def suite_experiments(self) -> list[str]:
        """Names of the active experiments that hold at least one suite run, sorted."""
        exps = self._ask("experiments")
        if not exps:
            return []
        suites = self._ask("runs_with_tag", list(exps), ROLE, C.ROLE_SUITE)
        return sorted({exps[r.experiment_id] for r in suites})

    def latest_suite(self, experiment: str) -> StoredRun:
        exp = self._ask("experiment_by_name", experiment)
        if exp is None or exp[1] != "active":
            known = ", ".join(self.suite_experiments()) or "none"
            raise ReportError(f"no experiment {experiment!r} in {self.uri} (experiments with suites: {known})")
        suites = self._ask("runs_with_tag", [exp[0]], ROLE, C.ROLE_SUITE)
        if not suites:
            raise ReportError(f"experiment {experiment!r} has no suite run (tag {ROLE}=suite) in {self.uri}")
        # A rerun of a spec reopens its suite run: its last activity is its end (or its start).
        return max(suites, key=lambda r: (max(r.start_time or 0, r.end_time or 0), r.start_time))

    def suite_by_id(self, run_id: str) -> tuple[str, StoredRun]:
        """(experiment name, run) of a suite run given by id."""
        run = self._ask("run", run_id)
        if run is None:
            raise ReportError(f"--suite {run_id}: no such run in {self.uri}")
        if run.tags.get(ROLE) != C.ROLE_SUITE:
            raise ReportError(f"--suite {run_id}: not a suite run (it has no tag {ROLE}=suite)")
        return self._ask("experiment_name", run.experiment_id), run

    # ------------------------------------------------------------ one suite

    def load(self, experiment: str, suite: StoredRun, all_predictions: bool = False, val_probs: bool = False) -> SuiteData:
        """The suite's rows, histories and, for the runs the per-class figures are drawn of (or
        for every run with ``all_predictions``: what per-image statistics need), predictions;
        with ``val_probs`` every finished run's whole softmax (``predictions/val_probs.npz``)."""
        notes: list[str] = []
        suite_id = suite.run_id
        tags = suite.tags
        candidates = self._ask("runs_with_tag", [suite.experiment_id], ROLE, C.ROLE_VARIANT)
        manifest = self._read_json(suite, C.SUITE_MANIFEST)
        if manifest is None:
            notes.append("suite.json is missing from the suite run (an older store): rows are the suite's "
                         "child runs, in the order of its bioclf.variants tag")
            manifest = _manifest_from_children(tags, [r for r in candidates if r.tags.get(PARENT) == suite_id])
        by_hash: dict[str, list[StoredRun]] = {}
        for run in candidates:
            by_hash.setdefault(run.tags.get(C.CONFIG_HASH, ""), []).append(run)
        chosen = [_pick_run(by_hash.get(row.get("config_hash") or "", []), suite_id) for row in manifest["runs"]]
        baseline = manifest.get("baseline") or tags.get(C.BASELINE, "")
        runs = pd.DataFrame([_run_record(row, run, baseline) for row, run in zip(manifest["runs"], chosen)])
        by_id = {r.run_id: r for r in chosen if r is not None}

        with ThreadPoolExecutor(WORKERS) as pool:
            histories = self._histories(by_id, pool, notes)
            predictions, classes = self._predictions(runs, baseline, by_id, pool, notes, all_predictions)
            tree_run = _taxonomy_run(runs, by_id)
            probs = self._val_probs(runs, by_id, pool, notes) if val_probs or tree_run else {}
            logged_tree = self._read_csv(tree_run, C.TAXONOMY, text=True) if tree_run else None
        return SuiteData(
            experiment=experiment, suite_run_id=suite_id, tracking_uri=self.uri, baseline=baseline,
            variants=list(manifest.get("variants") or dict.fromkeys(runs["variant"])), runs=runs,
            histories=histories, predictions=predictions, classes=classes,
            description=manifest.get("description") or tags.get("mlflow.note.content", ""),
            diffs=manifest.get("diffs") or {}, suite_status=suite.status, notes=notes, val_probs=probs,
            logged_taxonomy=logged_tree,
        )

    def _histories(self, by_id: dict[str, StoredRun], pool: ThreadPoolExecutor, notes: list[str]) -> pd.DataFrame:
        """history.csv of every run, else (older or unfinished runs) the per-metric histories."""
        ids = list(by_id)
        frames = dict(zip(ids, pool.map(lambda rid: self._read_csv(by_id[rid], C.HISTORY), ids)))
        missing = [rid for rid in ids if frames[rid] is None]
        keys = [(rid, key) for rid in missing for key in by_id[rid].metrics if key not in FINAL_METRICS]
        metrics = pool.map(lambda rk: (rk[0], self._ask("metric_history", *rk)), keys)
        for rid, frame in _pivot_histories(metrics, missing).items():
            frames[rid] = frame
        # Unfinished runs have no history.csv yet (it is written at the end): only say so for
        # finished runs, i.e. an older bioclf or a deleted artifact.
        finished_missing = [rid for rid in missing if by_id[rid].status == "FINISHED"]
        if finished_missing:
            names = ", ".join(by_id[rid].run_name or rid for rid in finished_missing)
            notes.append(f"history.csv missing for {len(finished_missing)} finished run(s) ({names}): "
                         "curves read from the logged per-epoch metrics instead")
        return _concat_histories(frames)

    def _predictions(self, runs: pd.DataFrame, baseline: str, by_id: dict[str, StoredRun], pool: ThreadPoolExecutor,
                     notes: list[str], every_run: bool = False) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None]:
        if every_run:
            picked = [row for _, row in runs[runs["status"] == "FINISHED"].iterrows()]
        else:
            picked = [row for _, row in figure_runs(runs, baseline)]
        wanted = [by_id[row["run_id"]] for row in picked]
        frames = list(pool.map(lambda r: self._read_csv(r, C.PREDICTIONS), wanted))
        predictions = {}
        for row, frame in zip(picked, frames):
            if frame is None:
                notes.append(f"{run_label(row)} ({row['run_id']}): predictions/val.csv missing or unreadable: "
                             "its per-class accuracy and confusion matrix are skipped")
            else:
                predictions[row["run_id"]] = frame
        classes = None
        wanted_ids = {r.run_id for r in wanted}
        for run in wanted + [r for rid, r in by_id.items() if rid not in wanted_ids]:
            classes = self._read_csv(run, C.CLASSES)
            if classes is not None:
                break
        if classes is None and predictions:
            notes.append("classes.csv missing: classes are shown by label index")
        return predictions, classes

    # ------------------------------------------------------------ writing back

    def log_report(self, suite_run_id: str, folder: Path, subfolders: list[str], files: list[str]) -> None:
        """The report's folders and top-level files as artifacts of the suite run, under ``report/``."""
        def direct(log: StoreLog) -> None:
            for sub in subfolders:
                if (folder / sub).is_dir():
                    log.log_artifacts(suite_run_id, folder / sub, f"report/{sub}")
            for name in files:
                log.log_artifact(suite_run_id, folder / name, "report")

        self._write(direct, lambda mlflow: mlflow.log_report(suite_run_id, folder, subfolders, files))

    def log_suite_table(self, suite_run_id: str, csv_path: Path) -> None:
        """The ablation table's numbers on the suite run (names: contract.SUITE_TABLE_METRICS per
        variant, tag bioclf.verdict.<variant>), so the MLflow UI shows the comparison. ``csv_path``:
        the report's tables/ablation.csv (nothing is logged without it)."""
        if not csv_path.is_file():
            return
        metrics, tags = suite_table_batch(pd.read_csv(csv_path), int(time.time() * 1000))
        self._write(lambda log: log.log_batch(suite_run_id, metrics, tags),
                    lambda mlflow: mlflow.log_batch(suite_run_id, metrics, tags))

    def _write(self, direct, through_mlflow) -> None:
        """``direct(StoreLog)`` for a local SQLite store of a schema it knows (what MLflow would
        write, without its import: bioclf.tracking.sqlite_log), else, or when it is not sure,
        ``through_mlflow(_MlflowSource)``. Both are whole-or-nothing per row and may be redone."""
        log = StoreLog.open(self.uri)
        if log is not None:
            try:
                with log:
                    direct(log)
                return
            except Unsure:
                pass
        through_mlflow(self._through_mlflow())

    # ------------------------------------------------------------ reading artifacts

    @contextmanager
    def _artifact(self, run: StoredRun, path: str):
        """A local file holding the run's artifact ``path`` while the block runs (None when there
        is none): where it lies for a local store read through the view, else a download."""
        if self._view is not None:
            try:
                yield self._view.artifact(run, path)
                return
            except Unsure:
                pass
        with self._through_mlflow().artifact(run, path) as local:
            yield local

    def _read_csv(self, run: StoredRun, path: str, text: bool = False) -> pd.DataFrame | None:
        """The run's CSV artifact ``path``; ``text``: every cell a string, as written."""
        options = {"dtype": str, "keep_default_na": False} if text else {}
        with self._artifact(run, path) as local:
            try:
                return pd.read_csv(local, **options) if local is not None else None
            except _UNREADABLE:
                return None

    def _val_probs(self, runs: pd.DataFrame, by_id: dict[str, StoredRun], pool: ThreadPoolExecutor,
                   notes: list[str]) -> dict[str, np.ndarray]:
        done = [row for _, row in runs[runs["status"] == "FINISHED"].iterrows()]
        arrays = list(pool.map(lambda row: self._read_npz(by_id[row["run_id"]], C.VAL_PROBS), done))
        missing = [run_label(row) for row, a in zip(done, arrays) if a is None]
        if missing:
            notes.append(f"{C.VAL_PROBS} missing for {len(missing)} finished run(s) ({', '.join(missing)}; logged "
                         "before it existed, or deleted): no measures of the whole softmax for them")
        return {row["run_id"]: a for row, a in zip(done, arrays) if a is not None}

    def _read_npz(self, run: StoredRun, path: str) -> np.ndarray | None:
        with self._artifact(run, path) as local:
            try:
                return np.load(local)["probs"].astype(np.float32) if local is not None else None
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged file: reported missing
                return None

    def _read_json(self, run: StoredRun, path: str) -> dict | None:
        with self._artifact(run, path) as local:
            try:
                return json.loads(local.read_text()) if local is not None else None
            except (OSError, ValueError):
                return None


# ---------------------------------------------------------------- pure helpers


@contextmanager
def _repository(artifact_uri: str, tracking_uri: str):
    """An artifact repository whose thread pool is shut down after use: idle threads left behind
    would keep the figures from being drawn in forked processes (see analysis.jobs)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    try:
        yield repo
    finally:
        pool = getattr(repo, "thread_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)


def _taxonomy_run(runs: pd.DataFrame, by_id: dict[str, StoredRun]) -> StoredRun | None:
    """A finished run that trained with a taxonomy (its params name data.taxonomy or a synthetic
    hierarchy), the baseline's first when it has one: its taxonomy.csv is the report's tree."""
    for _, row in runs[runs["status"] == "FINISHED"].sort_values("is_baseline", ascending=False,
                                                                 kind="stable").iterrows():
        run = by_id.get(row["run_id"])
        params = run.params if run is not None else {}
        if params.get("data.taxonomy", "None") != "None" or params.get("data.synthetic.hierarchy", "None") != "None":
            return run
    return None


def _pick_run(candidates: list[StoredRun], suite_id: str) -> StoredRun | None:
    """Of the runs with a row's config hash: a finished one first, then one of this suite, then
    the newest (a forced rerun that failed does not hide the finished run it was meant to redo)."""
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.status == "FINISHED", r.tags.get(PARENT) == suite_id, r.start_time or 0))


def _manifest_from_children(tags: dict[str, str], children: list[StoredRun]) -> dict:
    """What suite.json would say, rebuilt from the suite's children and its tags."""
    try:
        order = json.loads(tags.get(C.VARIANTS, "[]"))
    except ValueError:
        order = []
    for run in sorted(children, key=lambda r: r.start_time or 0):
        name = run.tags.get(C.VARIANT, run.run_name)
        if name not in order:
            order.append(name)
    rows, seen = [], set()
    for run in sorted(children, key=lambda r: (order.index(r.tags.get(C.VARIANT, r.run_name)),
                                               _as_int(r.tags.get(C.SEED)) or 0)):
        t = run.tags
        key = (t.get(C.VARIANT, run.run_name), t.get(C.SEED))
        if key not in seen:
            seen.add(key)
            rows.append({"variant": key[0], "seed": _as_int(key[1]), "config_hash": t.get(C.CONFIG_HASH)})
    for name in order:  # a listed variant that never got a child run is still a row: "not run"
        if name not in {r["variant"] for r in rows}:
            rows.append({"variant": name, "seed": None, "config_hash": None})
    rows.sort(key=lambda r: order.index(r["variant"]))
    return {"baseline": tags.get(C.BASELINE, ""), "variants": order, "runs": rows}


def _as_int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _run_record(row: dict, run: StoredRun | None, baseline: str) -> dict:
    """One row of SuiteData.runs: the suite's (variant, seed, hash) and what its run logged."""
    record = {"variant": row["variant"], "seed": row.get("seed"), "config_hash": row.get("config_hash"),
              "run_id": None, "run_name": None, "status": NOT_RUN, "error": None, "parent_run_id": None,
              "start_time": pd.NaT, "end_time": pd.NaT, "num_params": None, "num_trainable_params": None,
              "max_epochs": None, "is_baseline": row["variant"] == baseline, "data_fingerprint": None, "host": None,
              "fold": row.get("fold")}
    record.update(dict.fromkeys(FINAL_METRICS, float("nan")))
    if run is None:
        return record
    record.update(
        run_id=run.run_id, run_name=run.run_name, status=run.status, error=run.tags.get(C.ERROR),
        parent_run_id=run.tags.get(PARENT),
        start_time=pd.to_datetime(run.start_time, unit="ms", utc=True) if run.start_time else pd.NaT,
        end_time=pd.to_datetime(run.end_time, unit="ms", utc=True) if run.end_time else pd.NaT,
        num_params=_as_int(run.params.get("model.num_params")),
        num_trainable_params=_as_int(run.params.get("model.num_trainable_params")),
        max_epochs=_as_int(run.params.get("train.epochs")),
        data_fingerprint=run.tags.get(C.DATA_FINGERPRINT), host=run.tags.get(C.HOST),
    )
    record.update({k: v for k, v in run.metrics.items() if k in FINAL_METRICS})
    record.update({f"params.{k}": v for k, v in sorted(run.params.items())})
    return record


def _pivot_histories(results, run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Metric histories [(run_id, [(key, step, timestamp, value)])] -> one wide frame (epoch x
    metric) per run."""
    rows: dict[str, list[tuple]] = {rid: [] for rid in run_ids}
    for rid, metrics in results:
        rows[rid].extend(metrics)
    frames = {}
    for rid, items in rows.items():
        long = pd.DataFrame(items, columns=["key", "epoch", "timestamp", "value"]).sort_values("timestamp")
        # A resumed run may log an epoch twice: the later value is the one that counted.
        wide = long.pivot_table(index="epoch", columns="key", values="value", aggfunc="last")
        frames[rid] = wide.reset_index().rename_axis(columns=None)
    return frames


def _concat_histories(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = [f.assign(run_id=rid) for rid, f in frames.items() if f is not None and not f.empty]
    if not parts:
        return pd.DataFrame(columns=["run_id", "epoch", *EPOCH_METRICS])
    long = pd.concat(parts, ignore_index=True)
    first = ["run_id", "epoch", *[m for m in EPOCH_METRICS if m in long.columns]]
    long = long[first + [c for c in long.columns if c not in first]]
    long["epoch"] = long["epoch"].astype(int)
    return long
