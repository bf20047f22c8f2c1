"""Read a suite back from the MLflow tracking store; log a report back to it.

The only module of ``analysis`` that imports mlflow. It relies on docs/tracking.md alone and
goes through ``MlflowClient`` and artifact repositories only, so a remote tracking server
(``http://...``) is read exactly like the local SQLite store.

Cost: one search for the suite runs, one (paged) search for the experiment's variant runs, one
``suite.json`` download, then per run of the suite one ``history.csv`` download (in a thread
pool); only runs without that artifact (older or unfinished runs) cost one
``get_metric_history`` call per metric, also pooled. Predictions are read for the two runs the
per-class figures are drawn for, not for every run.
"""

from __future__ import annotations

import os

# MLflow draws a tqdm bar per artifact download; a report reads dozens of small files.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import unquote  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities import Metric, Run, RunTag, ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from analysis.errors import ReportError  # noqa: E402
from analysis.suite import EPOCH_METRICS, FINAL_METRICS, NOT_RUN, SuiteData, figure_runs, run_label  # noqa: E402
from bioclf.errors import BioclfError  # noqa: E402
from bioclf.tracking import contract as C  # noqa: E402
from bioclf.tracking.uri import check_server, resolve_tracking_uri  # noqa: E402

ROLE, PARENT = C.ROLE, C.PARENT_RUN
WORKERS = 8  # artifact downloads and metric histories are I/O bound (HTTP or SQLite)
_UNREADABLE = (MlflowException, OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError)


class StoreReader:
    """The suites of one tracking store, read into ``SuiteData``."""

    def __init__(self, tracking_uri: str | None = None):
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
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
        self.client = MlflowClient(tracking_uri=self.uri)

    # ------------------------------------------------------------ suites

    def suite_experiments(self) -> list[str]:
        """Names of the active experiments that hold at least one suite run, sorted."""
        exps = {e.experiment_id: e.name for e in self._all_experiments()}
        if not exps:
            return []
        suites = self._search(list(exps), f"tags.`{ROLE}` = '{C.ROLE_SUITE}'")
        return sorted({exps[r.info.experiment_id] for r in suites})

    def latest_suite(self, experiment: str) -> Run:
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None or exp.lifecycle_stage != "active":
            known = ", ".join(self.suite_experiments()) or "none"
            raise ReportError(f"no experiment {experiment!r} in {self.uri} (experiments with suites: {known})")
        suites = self._search([exp.experiment_id], f"tags.`{ROLE}` = '{C.ROLE_SUITE}'")
        if not suites:
            raise ReportError(f"experiment {experiment!r} has no suite run (tag {ROLE}=suite) in {self.uri}")
        # A rerun of a spec reopens its suite run: its last activity is its end (or its start).
        return max(suites, key=lambda r: (max(r.info.start_time or 0, r.info.end_time or 0), r.info.start_time))

    def suite_by_id(self, run_id: str) -> tuple[str, Run]:
        """(experiment name, run) of a suite run given by id."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise ReportError(f"--suite {run_id}: no such run in {self.uri}") from None
        if run.data.tags.get(ROLE) != C.ROLE_SUITE:
            raise ReportError(f"--suite {run_id}: not a suite run (it has no tag {ROLE}=suite)")
        return self.client.get_experiment(run.info.experiment_id).name, run

    # ------------------------------------------------------------ one suite

    def load(self, experiment: str, suite: Run, all_predictions: bool = False, val_probs: bool = False) -> SuiteData:
        """The suite's rows, histories and, for the runs the per-class figures are drawn of (or
        for every run with ``all_predictions``: what per-image statistics need), predictions;
        with ``val_probs`` every finished run's whole softmax (``predictions/val_probs.npz``)."""
        notes: list[str] = []
        suite_id = suite.info.run_id
        tags = suite.data.tags
        candidates = self._search([suite.info.experiment_id], f"tags.`{ROLE}` = '{C.ROLE_VARIANT}'")
        manifest = self._read_json(suite, C.SUITE_MANIFEST)
        if manifest is None:
            notes.append("suite.json is missing from the suite run (an older store): rows are the suite's "
                         "child runs, in the order of its bioclf.variants tag")
            manifest = _manifest_from_children(tags, [r for r in candidates if r.data.tags.get(PARENT) == suite_id])
        by_hash: dict[str, list[Run]] = {}
        for run in candidates:
            by_hash.setdefault(run.data.tags.get(C.CONFIG_HASH, ""), []).append(run)
        chosen = [_pick_run(by_hash.get(row.get("config_hash") or "", []), suite_id) for row in manifest["runs"]]
        baseline = manifest.get("baseline") or tags.get(C.BASELINE, "")
        runs = pd.DataFrame([_run_record(row, run, baseline) for row, run in zip(manifest["runs"], chosen)])
        by_id = {r.info.run_id: r for r in chosen if r is not None}

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
            diffs=manifest.get("diffs") or {}, suite_status=suite.info.status, notes=notes, val_probs=probs,
            logged_taxonomy=logged_tree,
        )

    def _histories(self, by_id: dict[str, Run], pool: ThreadPoolExecutor, notes: list[str]) -> pd.DataFrame:
        """history.csv of every run, else (older or unfinished runs) the per-metric histories."""
        ids = list(by_id)
        frames = dict(zip(ids, pool.map(lambda rid: self._read_csv(by_id[rid], C.HISTORY), ids)))
        missing = [rid for rid in ids if frames[rid] is None]
        keys = [(rid, key) for rid in missing for key in by_id[rid].data.metrics if key not in FINAL_METRICS]
        metrics = pool.map(lambda rk: (rk[0], self.client.get_metric_history(*rk)), keys)
        for rid, frame in _pivot_histories(metrics, missing).items():
            frames[rid] = frame
        # Unfinished runs have no history.csv yet (it is written at the end): only say so for
        # finished runs, i.e. an older bioclf or a deleted artifact.
        finished_missing = [rid for rid in missing if by_id[rid].info.status == "FINISHED"]
        if finished_missing:
            names = ", ".join(by_id[rid].info.run_name or rid for rid in finished_missing)
            notes.append(f"history.csv missing for {len(finished_missing)} finished run(s) ({names}): "
                         "curves read from the logged per-epoch metrics instead")
        return _concat_histories(frames)

    def _predictions(self, runs: pd.DataFrame, baseline: str, by_id: dict[str, Run], pool: ThreadPoolExecutor,
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
        wanted_ids = {r.info.run_id for r in wanted}
        for run in wanted + [r for rid, r in by_id.items() if rid not in wanted_ids]:
            classes = self._read_csv(run, C.CLASSES)
            if classes is not None:
                break
        if classes is None and predictions:
            notes.append("classes.csv missing: classes are shown by label index")
        return predictions, classes

    # ------------------------------------------------------------ writing back

    def log_report(self, suite_run_id: str, folder: Path, subfolders: list[str], files: list[str]) -> None:
        """The report's folders and top-level files as artifacts of the suite run, under ``report/``.

        What ``MlflowClient.log_artifacts`` does, through a repository of our own: the client
        caches its repositories and their upload threads, which would keep the next suite's
        figures from being drawn in forked processes (see analysis.jobs)."""
        uri = self.client.get_run(suite_run_id).info.artifact_uri
        with _repository(uri, self.uri) as repo:
            for sub in subfolders:
                if (folder / sub).is_dir():
                    repo.log_artifacts(str(folder / sub), f"report/{sub}")
            for name in files:
                repo.log_artifact(str(folder / name), "report")

    def log_suite_table(self, suite_run_id: str, csv_path: Path) -> None:
        """The ablation table's numbers on the suite run (names: contract.SUITE_TABLE_METRICS per
        variant, tag bioclf.verdict.<variant>), so the MLflow UI shows the comparison. ``csv_path``:
        the report's tables/ablation.csv (nothing is logged without it)."""
        if not csv_path.is_file():
            return
        table = pd.read_csv(csv_path)
        now = int(time.time() * 1000)
        metrics, tags = [], []
        for _, row in table.iterrows():
            variant = str(row["variant"])
            for name in C.SUITE_TABLE_METRICS:
                value = row.get(name)
                if value is not None and pd.notna(value):
                    metrics.append(Metric(C.suite_table_metric(variant, name), float(value), now, 0))
            if pd.notna(row.get("verdict")):
                tags.append(RunTag(C.VERDICT_PREFIX + variant, str(row["verdict"])))
        for start in range(0, max(len(metrics), 1), 1000):
            self.client.log_batch(suite_run_id, metrics=metrics[start:start + 1000],
                                  tags=tags if start == 0 else [])

    # ------------------------------------------------------------ helpers

    def _all_experiments(self) -> list:
        found, token = [], None
        while True:
            page = self.client.search_experiments(ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _search(self, experiment_ids: list[str], filter_string: str) -> list[Run]:
        """Every active run matching, newest first (paged: a search returns at most 1000)."""
        found, token = [], None
        while True:
            page = self.client.search_runs(experiment_ids, filter_string, ViewType.ACTIVE_ONLY, max_results=1000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _download(self, run: Run, path: str, folder: str) -> Path | None:
        with _repository(run.info.artifact_uri, self.uri) as repo:
            try:
                return Path(repo.download_artifacts(path, folder))
            except _UNREADABLE:
                return None

    def _read_csv(self, run: Run, path: str, text: bool = False) -> pd.DataFrame | None:
        """The run's CSV artifact ``path``; ``text``: every cell a string, as written."""
        options = {"dtype": str, "keep_default_na": False} if text else {}
        with tempfile.TemporaryDirectory(prefix="bioclf-report-") as tmp:
            local = self._download(run, path, tmp)
            try:
                return pd.read_csv(local, **options) if local is not None else None
            except _UNREADABLE:
                return None

    def _val_probs(self, runs: pd.DataFrame, by_id: dict[str, Run], pool: ThreadPoolExecutor,
                   notes: list[str]) -> dict[str, np.ndarray]:
        done = [row for _, row in runs[runs["status"] == "FINISHED"].iterrows()]
        arrays = list(pool.map(lambda row: self._read_npz(by_id[row["run_id"]], C.VAL_PROBS), done))
        missing = [run_label(row) for row, a in zip(done, arrays) if a is None]
        if missing:
            notes.append(f"{C.VAL_PROBS} missing for {len(missing)} finished run(s) ({', '.join(missing)}; logged "
                         "before it existed, or deleted): no measures of the whole softmax for them")
        return {row["run_id"]: a for row, a in zip(done, arrays) if a is not None}

    def _read_npz(self, run: Run, path: str) -> np.ndarray | None:
        with tempfile.TemporaryDirectory(prefix="bioclf-report-") as tmp:
            local = self._download(run, path, tmp)
            try:
                return np.load(local)["probs"].astype(np.float32) if local is not None else None
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged file: reported missing
                return None

    def _read_json(self, run: Run, path: str) -> dict | None:
        with tempfile.TemporaryDirectory(prefix="bioclf-report-") as tmp:
            local = self._download(run, path, tmp)
            try:
                return json.loads(local.read_text()) if local is not None else None
            except (OSError, ValueError):
                return None


# ---------------------------------------------------------------- pure helpers


@contextmanager
def _repository(artifact_uri: str, tracking_uri: str):
    """An artifact repository whose thread pool is shut down after use: idle threads left behind
    would keep the figures from being drawn in forked processes (see analysis.jobs)."""
    repo = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    try:
        yield repo
    finally:
        pool = getattr(repo, "thread_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)


def _taxonomy_run(runs: pd.DataFrame, by_id: dict[str, Run]) -> Run | None:
    """A finished run that trained with a taxonomy (its params name data.taxonomy or a synthetic
    hierarchy), the baseline's first when it has one: its taxonomy.csv is the report's tree."""
    for _, row in runs[runs["status"] == "FINISHED"].sort_values("is_baseline", ascending=False,
                                                                 kind="stable").iterrows():
        run = by_id.get(row["run_id"])
        params = run.data.params if run is not None else {}
        if params.get("data.taxonomy", "None") != "None" or params.get("data.synthetic.hierarchy", "None") != "None":
            return run
    return None


def _pick_run(candidates: list[Run], suite_id: str) -> Run | None:
    """Of the runs with a row's config hash: a finished one first, then one of this suite, then
    the newest (a forced rerun that failed does not hide the finished run it was meant to redo)."""
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.info.status == "FINISHED", r.data.tags.get(PARENT) == suite_id,
                                          r.info.start_time or 0))


def _manifest_from_children(tags: dict[str, str], children: list[Run]) -> dict:
    """What suite.json would say, rebuilt from the suite's children and its tags."""
    try:
        order = json.loads(tags.get(C.VARIANTS, "[]"))
    except ValueError:
        order = []
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        name = run.data.tags.get(C.VARIANT, run.info.run_name)
        if name not in order:
            order.append(name)
    rows, seen = [], set()
    for run in sorted(children, key=lambda r: (order.index(r.data.tags.get(C.VARIANT, r.info.run_name)),
                                               _as_int(r.data.tags.get(C.SEED)) or 0)):
        t = run.data.tags
        key = (t.get(C.VARIANT, run.info.run_name), t.get(C.SEED))
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


def _run_record(row: dict, run: Run | None, baseline: str) -> dict:
    """One row of SuiteData.runs: the suite's (variant, seed, hash) and what its run logged."""
    record = {"variant": row["variant"], "seed": row.get("seed"), "config_hash": row.get("config_hash"),
              "run_id": None, "run_name": None, "status": NOT_RUN, "error": None, "parent_run_id": None,
              "start_time": pd.NaT, "end_time": pd.NaT, "num_params": None, "num_trainable_params": None,
              "max_epochs": None, "is_baseline": row["variant"] == baseline, "data_fingerprint": None, "host": None,
              "fold": row.get("fold")}
    record.update(dict.fromkeys(FINAL_METRICS, float("nan")))
    if run is None:
        return record
    info, data = run.info, run.data
    record.update(
        run_id=info.run_id, run_name=info.run_name, status=info.status, error=data.tags.get(C.ERROR),
        parent_run_id=data.tags.get(PARENT),
        start_time=pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
        end_time=pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT,
        num_params=_as_int(data.params.get("model.num_params")),
        num_trainable_params=_as_int(data.params.get("model.num_trainable_params")),
        max_epochs=_as_int(data.params.get("train.epochs")),
        data_fingerprint=data.tags.get(C.DATA_FINGERPRINT), host=data.tags.get(C.HOST),
    )
    record.update({k: v for k, v in data.metrics.items() if k in FINAL_METRICS})
    record.update({f"params.{k}": v for k, v in data.params.items()})
    return record


def _pivot_histories(results, run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Metric histories [(run_id, [Metric])] -> one wide frame (epoch x metric) per run."""
    rows: dict[str, list[tuple]] = {rid: [] for rid in run_ids}
    for rid, metrics in results:
        rows[rid].extend((m.key, m.step, m.timestamp, m.value) for m in metrics)
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
