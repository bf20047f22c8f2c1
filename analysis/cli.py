"""``bioclf-report``: rebuild every figure and table of a suite's report from the tracking store.

Thin by design: resolve the suites, load each (``analysis.store``), build its report
(``analysis.build``), log it back to the suite run. Exit codes: 0 done; 1 a report was written
but could not be logged back to the store; 2 bad input or nothing to report (empty store,
unknown experiment or suite, a folder that is not a report's). Errors are one line; ``--debug``
shows the traceback.

Fast when nothing changed: for a local SQLite store, ``analysis.probe`` fingerprints what each
report is drawn from without importing MLflow; a report folder that holds the report of that
fingerprint (``analysis.cache``) is kept as it is, and when every report is, the call ends there.
Otherwise the figure workers are forked first (``analysis.jobs.WorkerPool``), so that they import
matplotlib while this process reads the store (a local SQLite store without MLflow, see
``analysis.store``), and only the figures and tables whose inputs changed are redrawn. Progress
goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from pathlib import Path

from analysis.errors import ReportError

EXIT_OK, EXIT_NOT_LOGGED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad arguments are bad input: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"bioclf-report: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


FIGURE_FORMATS = ("png", "pdf", "svg")
TABLE_FORMATS = ("md", "csv", "tex")


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(FIGURE_FORMATS)}")
    return formats


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bioclf-report", description="Rebuild every figure and table of a suite's report from the "
                "MLflow tracking store, into DIR/<experiment>/, and log it back to the suite run.")
    p.add_argument("--experiment", action="append", metavar="NAME",
                   help="experiment (spec name) to report on (repeatable; default: every experiment with a suite)")
    p.add_argument("--suite", action="append", metavar="RUN_ID",
                   help="report this suite run instead of the latest one of its experiment (repeatable)")
    p.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                   help="reports go to DIR/<experiment>/ (default: reports/)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                   "else sqlite:///<project>/mlruns/mlflow.db)")
    p.add_argument("--top-k", type=int, default=10, metavar="K", help="weakest classes labelled and listed (10)")
    p.add_argument("--top-pairs", type=int, default=15, metavar="N", help="confused pairs listed (15)")
    p.add_argument("--figure-formats", type=_formats, default=("png",), metavar="EXT,...",
                   help="figure files to write, first one shown in index.md (default: png)")
    p.add_argument("--pdf", action="store_true",
                   help="also save every figure as PDF (drawing takes about 40%% longer)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes drawing figures (default: one per CPU; 1: none)")
    p.add_argument("--taxonomy", type=Path, metavar="CSV",
                   help="class taxonomy (header class,genus,...; one row per class folder): Table 7, how "
                   "severe each variant's mistakes are in the tree, with and without CRM re-ranking, Δ vs the "
                   "baseline (default: the tree the runs trained with, data.taxonomy, if any)")
    p.add_argument("--no-log", action="store_true", help="do not log the report back to the suite run")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def folder_name(experiment: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", experiment).strip("_") or "experiment"


def figure_formats(args) -> tuple[str, ...]:
    """``--figure-formats``, with PDF added by ``--pdf``."""
    formats = tuple(args.figure_formats)
    return formats + ("pdf",) if args.pdf and "pdf" not in formats else formats


# ---------------------------------------------------------------- reports that are current


def _report_keys(args, formats: tuple[str, ...]) -> dict[str, str]:
    """``{experiment: key}`` of the reports this call would build, where the store can be
    fingerprinted without MLflow (``analysis.probe``); {} where it cannot, or for ``--suite``."""
    if args.suite:
        return {}
    from analysis import probe
    from bioclf.tracking.uri import resolve_tracking_uri
    from analysis.cache import content_key, report_code

    uri = resolve_tracking_uri(args.tracking_uri)
    prints = probe.fingerprints(uri, args.experiment)
    if not prints:
        return {}
    options = [args.top_k, args.top_pairs, list(formats), list(TABLE_FORMATS), _taxonomy_digest(args.taxonomy)]
    return {name: content_key("bioclf-report", report_code(), uri, options, fp) for name, fp in prints.items()}


def _taxonomy_digest(path: Path | None) -> str | None:
    """What of ``--taxonomy`` a report depends on: its bytes (an edit redraws Table 7)."""
    if path is None:
        return None
    import hashlib

    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # the build says why, in one line


def _current_reports(args, keys: dict[str, str]) -> dict[str, dict]:
    """The reports among ``keys`` whose folder holds that very report, untouched (and logged to
    the store, unless this call says ``--no-log``)."""
    from analysis.cache import ReportCache

    current = {}
    for experiment, key in keys.items():
        report = ReportCache.read(args.out / folder_name(experiment)).current_report(key)
        if report is not None and (report.get("logged") or args.no_log):
            current[experiment] = report
    return current


def _say_kept(experiment: str, report: dict, say, err) -> None:
    for line in report.get("lines", []):
        say(line)
    err(f"bioclf-report: {experiment}: nothing changed since the last report: kept as it is "
        "(nothing read through MLflow, drawn or logged)")


def _remember(folder: Path, key: str, lines: list[str], logged: bool) -> None:
    """Record that ``folder`` now holds the report of ``key`` (what was said, whether logged)."""
    from analysis.cache import ReportCache

    ReportCache.read(folder).set_report(key, {"lines": lines, "logged": logged})


# ---------------------------------------------------------------- building


def _read_taxonomy(path: Path, data):
    """``--taxonomy`` checked against the suite's classes (folder names, in label order)."""
    from bioclf.errors import BioclfError
    from bioclf.taxonomy import read_taxonomy

    if data.class_folders is None:
        raise ReportError(f"--taxonomy {path}: the suite's runs logged no classes.csv: its class folders are unknown")
    try:
        return read_taxonomy(path, data.class_folders)
    except BioclfError as exc:
        raise ReportError(f"--taxonomy: {exc}") from None


def _logged_taxonomy(data, err):
    """The tree the suite's runs trained with (their taxonomy.csv); None, with a warning, when it
    does not fit the classes the runs logged."""
    from bioclf.errors import BioclfError
    from bioclf.taxonomy import parse_taxonomy

    if data.class_folders is None:
        return None
    try:
        return parse_taxonomy(data.logged_taxonomy, data.class_folders, "the runs' taxonomy.csv")
    except BioclfError as exc:
        err(f"bioclf-report: warning: {exc}; no Table 7 (give one with --taxonomy)")
        return None


def _targets(reader, args, say) -> tuple[list, int]:
    """(experiment, suite run) pairs to report, and how many asked-for ones were not found."""
    missing, found = 0, []
    if args.suite:
        for run_id in args.suite:
            try:
                found.append(reader.suite_by_id(run_id))
            except ReportError as exc:
                say(f"bioclf-report: error: {exc}")
                missing += 1
        wanted = set(args.experiment or [])
        if wanted:
            found = [t for t in found if t[0] in wanted]
        return found, missing
    names = args.experiment or reader.suite_experiments()
    if not names:
        raise ReportError(f"nothing to report: no experiment with a suite run in {reader.uri}")
    for name in names:
        try:
            found.append((name, reader.latest_suite(name)))
        except ReportError as exc:
            say(f"bioclf-report: error: {exc}")
            missing += 1
    return found, missing


def run(args, say=print) -> int:
    err = lambda text: say(text, file=sys.stderr)  # noqa: E731
    formats = figure_formats(args)
    keys = _report_keys(args, formats)
    current = _current_reports(args, keys)
    if keys and len(current) == len(keys):  # every report is current: MLflow is not even imported
        for experiment in keys:
            _say_kept(experiment, current[experiment], say, err)
        return EXIT_OK
    from analysis.jobs import WorkerPool

    pool = WorkerPool.start(args.workers)  # before MLflow may be imported: see analysis.jobs
    try:
        return _build_all(args, formats, keys, current, pool, say, err)
    finally:
        if pool is not None:
            pool.close()


def _build_all(args, formats, keys: dict[str, str], current: dict[str, dict], pool, say, err) -> int:
    from analysis.store import StoreReader  # imported here: --help stays fast (pandas is slow to import)

    reader = StoreReader(args.tracking_uri)
    try:
        return _build_targets(reader, args, formats, keys, current, pool, say, err)
    finally:
        reader.close()


def _build_targets(reader, args, formats, keys: dict[str, str], current: dict[str, dict], pool, say, err) -> int:
    from analysis.build import FIGURES, TABLES, BuildOptions, build_report
    from analysis.folds import pool_folds

    targets, problems = _targets(reader, args, err)
    options = BuildOptions(weakest_k=args.top_k, top_pairs=args.top_pairs, figure_formats=formats,
                           table_formats=TABLE_FORMATS, workers=args.workers)
    not_logged = 0
    for experiment, suite in targets:
        if experiment in current:
            _say_kept(experiment, current[experiment], say, err)
            continue
        progress = lambda text, e=experiment: err(f"bioclf-report: {e}: {text}")  # noqa: E731
        try:
            progress(f"reading suite run {suite.run_id}...")
            started = time.perf_counter()
            # paired tests need every run's predictions; the taxonomy table every run's softmax
            data = reader.load(experiment, suite, all_predictions=True, val_probs=args.taxonomy is not None)
            data = pool_folds(data)  # evaluation.folds: each variant x seed's K fold runs as one row
            if data.runs["run_id"].isna().all():
                raise ReportError(f"nothing to report for {experiment!r}: suite run {suite.run_id} "
                                  "has no run in the store yet")
            if args.taxonomy is not None:
                data.taxonomy = _read_taxonomy(args.taxonomy, data)
            elif data.logged_taxonomy is not None:
                data.taxonomy = _logged_taxonomy(data, err)
            progress(f"read {len(data.runs)} run(s), {len(data.histories)} history rows and "
                     f"{len(data.predictions)} predictions file(s) in {time.perf_counter() - started:.1f} s")
            folder = args.out / folder_name(experiment)
            report = build_report(data, folder, dataclasses.replace(options, progress=progress), pool)
        except ReportError as exc:
            err(f"bioclf-report: error: {exc}")
            problems += 1
            continue
        lines = [f"{experiment}: {len(report.files)} files -> {report.folder / 'index.html'} (suite run "
                 f"{data.suite_run_id})"]
        lines += [f"  note: {note}" for note in report.notes]
        for line in lines:
            say(line)
        logged = False
        if not args.no_log:
            try:
                progress(f"logging the report to suite run {data.suite_run_id}...")
                reader.log_report(data.suite_run_id, report.folder, [FIGURES, TABLES],
                                  [report.index.name, "index.html"])
                reader.log_suite_table(data.suite_run_id, report.folder / TABLES / "ablation.csv")
                lines.append(f"  logged to suite run {data.suite_run_id} under report/")
                say(lines[-1])
                logged = True
            except Exception as exc:  # the report on disk stands; say why the store did not take it
                if args.debug:
                    raise
                err(f"bioclf-report: warning: could not log the report to the store: {type(exc).__name__}: {exc}")
                not_logged += 1
        if experiment in keys:
            _remember(folder, keys[experiment], lines, logged)
    if problems or not targets:
        return EXIT_BAD_INPUT
    return EXIT_NOT_LOGGED if not_logged else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = _main(args)
    if argv is None and "pandas" in sys.modules:  # the program itself, not a caller in Python
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """End the process now. Tearing down pandas', MLflow's and matplotlib's modules takes the
    interpreter up to a second once the report is done, and does nothing for it: every file is
    closed, every write to the store committed, the workers joined. Output is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _main(args) -> int:
    try:
        return run(args)
    except ReportError as exc:
        if args.debug:
            raise
        print(f"bioclf-report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bioclf-report: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; --debug for the traceback
        if args.debug:
            raise
        print(f"bioclf-report: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(--debug shows the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
