"""``bioclf-report``: rebuild every figure and table of a suite's report from the tracking store.

Thin by design: resolve the suites, load each (``analysis.store``), build its report
(``analysis.build``), log it back to the suite run. Exit codes: 0 done; 1 a report was written
but could not be logged back to the store; 2 bad input or nothing to report (empty store,
unknown experiment or suite, a folder that is not a report's). Errors are one line; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from analysis.errors import ReportError

EXIT_OK, EXIT_NOT_LOGGED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad arguments are bad input: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"bioclf-report: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


FIGURE_FORMATS = ("png", "pdf", "svg")


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
    p.add_argument("--figure-formats", type=_formats, default=("png", "pdf"), metavar="EXT,...",
                   help="figure files to write, first one shown in index.md (default: png,pdf)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes drawing figures (default: one per CPU; 1: none)")
    p.add_argument("--no-log", action="store_true", help="do not log the report back to the suite run")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def folder_name(experiment: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", experiment).strip("_") or "experiment"


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
    from analysis.build import FIGURES, TABLES, BuildOptions, build_report
    from analysis.store import StoreReader  # imported here: --help stays fast (mlflow is slow to import)

    err = lambda text: say(text, file=sys.stderr)  # noqa: E731
    reader = StoreReader(args.tracking_uri)
    targets, problems = _targets(reader, args, err)
    options = BuildOptions(weakest_k=args.top_k, top_pairs=args.top_pairs, figure_formats=args.figure_formats,
                           workers=args.workers)
    not_logged = 0
    for experiment, suite in targets:
        try:
            data = reader.load(experiment, suite, all_predictions=True)  # paired tests need every run's
            if data.runs["run_id"].isna().all():
                raise ReportError(f"nothing to report for {experiment!r}: suite run {suite.info.run_id} "
                                  "has no run in the store yet")
            report = build_report(data, args.out / folder_name(experiment), options)
        except ReportError as exc:
            err(f"bioclf-report: error: {exc}")
            problems += 1
            continue
        say(f"{experiment}: {len(report.files)} files -> {report.index} (suite run {data.suite_run_id})")
        for note in report.notes:
            say(f"  note: {note}")
        if not args.no_log:
            try:
                reader.log_report(data.suite_run_id, report.folder, [FIGURES, TABLES], [report.index.name])
                say(f"  logged to suite run {data.suite_run_id} under report/")
            except Exception as exc:  # the report on disk stands; say why the store did not take it
                if args.debug:
                    raise
                err(f"bioclf-report: warning: could not log the report to the store: {type(exc).__name__}: {exc}")
                not_logged += 1
    if problems or not targets:
        return EXIT_BAD_INPUT
    return EXIT_NOT_LOGGED if not_logged else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
