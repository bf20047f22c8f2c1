"""``bioclf-exp``: run, list and validate ablation specs; open the MLflow UI; check data, predict,
fetch public datasets.

Thin by design: parse the arguments, load the spec, call a library function. Exit codes:
0 done, 1 a run failed, 2 bad input (spec, data, arguments). Errors are one line naming the
file / key / path; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bioclf.errors import BioclfError

# 3: the suite ended with runs another process was training (not trained here, not finished yet)
EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_NOT_ALL_TRAINED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviated options: `--npr 2` would pass argparse, then be missed when --nproc is
        # taken out of the command that torchrun runs again.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's own errors exit 2 too, with our one-line form
        self.print_usage(sys.stderr)
        raise SystemExit(f"bioclf-exp: error: {message}")


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected integers like 1,2,3") from None


def _folds(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"--folds {text!r}: expected an integer of at least 2")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # Long but flat: one block of add_argument calls per subcommand, in --help order.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                        "else sqlite:///<project>/mlruns/mlflow.db)")
    spec_args = argparse.ArgumentParser(add_help=False)
    spec_args.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override a config key for every variant, e.g. --set train.epochs=2 (repeatable)")
    spec_args.add_argument("--seeds", type=_seeds, help="comma-separated seeds (e.g. 0,1,2), replacing the spec's seeds: list")
    spec_args.add_argument("--folds", type=_folds, metavar="K", help="K-fold out-of-fold evaluation: train and val "
                           "pooled, K runs per variant x seed, every labelled image scored once "
                           "(= --set evaluation.folds=K)")

    parser = _Parser(prog="bioclf-exp", description="Run, list and validate ablation specs; open the MLflow UI.",
                     epilog="Exit codes: 0 done, 1 a run failed, 2 bad input, 3 runs left to another process that was training them (busy). Docs: README.md, docs/.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[common, spec_args], help="run a suite (every variant x seed)")
    run.add_argument("spec", type=Path, help="the spec YAML, e.g. experiments/smoke.yaml")
    run.add_argument("--variant", action="append", help="run only this variant (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="print the variants, their diffs and sizes; train nothing")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    run.add_argument("--force", action="store_true", help="rerun finished variants (as new runs; old ones stay)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    run.add_argument("--nproc", type=int, metavar="N",
                     help="train each run data-parallel on N processes of this machine (one per GPU; gloo on "
                     "CPU): starts torchrun --standalone --nproc-per-node N. For several machines call torchrun "
                     "yourself (docs/distributed.md)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: the runs one after the other here (default); ray: each run as a Ray task on a "
                     "cluster, several at once (needs the [ray] extra)")
    run.add_argument("--address", help="with --executor ray: the cluster to join (e.g. ray://head:10001 or "
                     "auto); default: $RAY_ADDRESS, else a local cluster started for this suite")
    run.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N",
                     help="with --executor ray: CPUs each run asks for (default 1)")
    run.add_argument("--gpus-per-run", type=float, default=0.0, metavar="N",
                     help="with --executor ray: GPUs each run asks for (default 0; 0.5 packs two runs per GPU)")
    run.add_argument("--max-retries", type=int, default=1, metavar="N",
                     help="with --executor ray: retries of a run whose worker or node died (default 1)")

    lst = sub.add_parser("list", parents=[common, spec_args], help="variants, config hash, size, status in the store")
    lst.add_argument("spec", type=Path, help="the spec YAML whose runs to look up in the store")

    val = sub.add_parser("validate", parents=[common, spec_args], help="validate spec files; train nothing")
    val.add_argument("specs", type=Path, nargs="+", help="one or more spec YAMLs, e.g. experiments/*.yaml")

    ui = sub.add_parser("ui", parents=[common], help="start the MLflow UI on the store (127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port to serve the UI on (default 5000)")
    ui.add_argument("--workers", type=int, default=1, metavar="N",
                    help="server worker processes (default 1: enough for one person; MLflow's own default is 4)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")

    chk = sub.add_parser("check-data", parents=[common], help="report on a dataset: counts, duplicates and "
                         "leakage across splits, unreadable files, fingerprint")
    chk.add_argument("root", type=Path, help="dataset root: ROOT/train/<class>/*, ROOT/val/<class>/*, ROOT/test/*")
    chk.add_argument("--json", dest="json_file", metavar="FILE",
                     help="write the full report as JSON to FILE ('-': to stdout, instead of the summary)")
    chk.add_argument("--out", type=Path, metavar="DIR", help="write summary.json, counts.csv, duplicates.csv, "
                     "unreadable.csv and plots (class_counts.png, image_sizes.png) into DIR")
    chk.add_argument("--strict", action="store_true", help="exit 2 on warnings too (duplicates across splits, ...)")
    chk.add_argument("--no-cache", action="store_true", help="hash every file again (the cache is not read or written)")
    chk.add_argument("--workers", type=int, help="processes for hashing (default: the CPUs, at most 8)")
    chk.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                     help="what a run would do with unreadable train/val images (data.on_bad_image): 'error' "
                          "(default) makes them a problem, exit 2, as run does; 'skip' a warning")
    chk.add_argument("--taxonomy", type=Path, metavar="CSV", help="also check a class tree (data.taxonomy: header "
                     "class,genus,...; one row per class folder) and show its ranks, values and singletons")
    chk.add_argument("--quiet", action="store_true", help="no progress bar")

    pred = sub.add_parser("predict", parents=[common], help="predict a flat image folder with a tracked run; "
                          "write image_name,pred_label")
    pred.add_argument("folder", type=Path, help="flat folder of images, e.g. ROOT/test")
    which = pred.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", dest="run_id", metavar="RUN_ID", help="the MLflow run to use")
    which.add_argument("--experiment", metavar="NAME",
                       help="use the best finished run of this experiment (by best_val_acc)")
    pred.add_argument("--variant", help="with --experiment: only runs of this variant")
    pred.add_argument("-o", "--output", type=Path, required=True, metavar="CSV", help="the prediction CSV to write")
    pred.add_argument("--top5", type=Path, metavar="CSV", help="also write image_name,top5,p_pred")
    pred.add_argument("--probs", type=Path, metavar="CSV", help="also write every class probability per image")
    pred.add_argument("--tta", choices=["none", "flip", "five_crop"], default=None,
                      help="test-time augmentation: flip averages the image and its mirror, five_crop its corners "
                           "and centre (default: the run's evaluation.tta)")
    pred.add_argument("--batch-size", type=int, help="default: the run's eval batch size")
    pred.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    pred.add_argument("--workers", type=int, help="DataLoader workers (default: the run's data.num_workers)")
    pred.add_argument("--skip-bad", action="store_true",
                      help="leave unreadable images out (counted) instead of failing")
    pred.add_argument("--no-log", action="store_true", help="do not log the CSV as an artifact of the run")
    pred.add_argument("--quiet", action="store_true", help="no progress bar")

    fetch = sub.add_parser("fetch-data", parents=[common], help="download a public dataset (torchvision) and lay "
                           "it out as DEST/train|val/<class>/, DEST/test/")
    fetch.add_argument("name", help="flowers102, oxford_pets or fgvc_aircraft")
    fetch.add_argument("dest", type=Path, help="new folder for the dataset")
    fetch.add_argument("--download-dir", type=Path, help="where torchvision downloads to (default: "
                       "$XDG_CACHE_HOME/bioclf/datasets); kept, the layout links to it")
    fetch.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of each class moved to val where the dataset has no val split (oxford_pets)")
    fetch.add_argument("--seed", type=int, default=0, help="seed of that val split")
    fetch.add_argument("--copy", action="store_true", help="copy files instead of hard-linking them")
    return parser


def _sigterm_as_interrupt(signum, frame):
    # A scheduler's SIGTERM (Slurm, Kubernetes, `kill`) gets the same clean stop as Ctrl-C:
    # the current run is marked KILLED and resumes from its last epoch on the next `run`.
    raise KeyboardInterrupt


def spec_overrides(args) -> dict:
    """``--set`` and ``--folds`` as one dotted mapping of overrides."""
    from bioclf.spec import parse_set_overrides

    overrides = parse_set_overrides(args.overrides)
    if args.folds is not None:
        overrides["evaluation.folds"] = args.folds
    return overrides


def cmd_run(args) -> int:
    from bioclf.spec import load_suite

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)

    suite = load_suite(args.spec, overrides=spec_overrides(args), seeds=args.seeds)
    runs = suite.select(args.variant)  # an unknown --variant is bad input before anything starts
    ray_options = _ray_options(args)
    if args.dry_run:  # no torch, no store: the inventory alone
        from bioclf.inventory import describe_dry_run

        print(describe_dry_run(suite, args.variant))
        return EXIT_OK
    from bioclf.engine import distributed

    if ray_options is not None and (args.nproc is not None or distributed.launched_by_torchrun()):
        raise BioclfError("--executor ray does not combine with --nproc / torchrun: a Ray task trains in one process")
    if args.nproc is not None and not args.dry_run:
        return _launch_torchrun(args)
    from bioclf.runner import run_suite

    ctx = distributed.init_from_env(device=_device_kind(runs))
    try:
        result = run_suite(
            suite, variants=args.variant, tracking_uri=args.tracking_uri, force=args.force,
            fail_fast=args.fail_fast, dry_run=args.dry_run, quiet=args.quiet,
            echo=print if ctx.is_main else _silent, ray=ray_options,
        )
    except Exception as exc:  # noqa: BLE001
        if not ctx.enabled or args.debug or isinstance(exc, BioclfError):
            raise
        # A DDP job that one rank cannot go on with: the run is marked KILLED (resumable) and
        # torchrun stops the others; one line here, the traceback with --debug.
        if ctx.is_main:
            first = str(exc).splitlines()[0] if str(exc) else ""
            print(f"bioclf-exp: error: the data-parallel job stopped: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_RUN_FAILED
    finally:
        distributed.shutdown()
    if result.failed:
        return EXIT_RUN_FAILED
    return EXIT_NOT_ALL_TRAINED if result.not_trained else EXIT_OK


def _silent(_: str) -> None:
    pass


def _device_kind(runs) -> str:
    """The one device kind of the selected runs (DDP picks its backend from it: NCCL / gloo)."""
    kinds = {"cpu" if run.config.train.device == "cpu" else "auto" for run in runs}
    if len(kinds) > 1:
        from bioclf.engine.distributed import launched_by_torchrun

        if launched_by_torchrun():
            raise BioclfError("under torchrun every selected variant must train on the same device kind "
                              "(some set train.device: cpu); select them with --variant")
    return kinds.pop() if kinds else "auto"


def _ray_options(args):
    ray_flags = [flag for flag, value, default in (("--address", args.address, None), ("--cpus-per-run",
                 args.cpus_per_run, 1.0), ("--gpus-per-run", args.gpus_per_run, 0.0), ("--max-retries",
                 args.max_retries, 1)) if value != default]
    if args.executor != "ray":
        if ray_flags:
            raise BioclfError(f"{ray_flags[0]} needs --executor ray")
        return None
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0 or args.max_retries < 0:
        raise BioclfError("--cpus-per-run must be > 0, --gpus-per-run and --max-retries >= 0")
    from bioclf.executors.ray import RayOptions, require_ray

    require_ray()
    return RayOptions(address=args.address or os.environ.get("RAY_ADDRESS") or None, cpus_per_run=args.cpus_per_run,
                      gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)


def _launch_torchrun(args) -> int:
    """``bioclf-exp run ... --nproc N``: the same command under torchrun on this machine.
    Bad input found by the workers (rank 0's preflight, more processes than GPUs) is said
    once and exits 2, through the exit-code file below."""
    from bioclf.engine.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise BioclfError("--nproc: already running under torchrun; drop --nproc")
    if args.nproc < 1:
        raise BioclfError(f"--nproc must be at least 1, got {args.nproc}")
    argv = list(args.argv)
    for i, item in enumerate(argv):  # drop "--nproc N" / "--nproc=N"
        if item == "--nproc":
            del argv[i:i + 2]
            break
        if item.startswith("--nproc="):
            del argv[i]
            break
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "bioclf.cli", *argv]
    import tempfile

    # torchrun exits 1 whatever its workers' codes were; rank 0 leaves its own here (0 / 1 / 2).
    with tempfile.TemporaryDirectory(prefix="bioclf-torchrun-") as scratch:
        code_file = Path(scratch) / "rank0-exit-code"
        proc = subprocess.Popen(command, env=dict(os.environ, BIOCLF_EXIT_CODE_FILE=str(code_file)))
        # A SIGTERM to this launcher goes on to torchrun, which passes it to every worker:
        # rank 0 marks its run KILLED, as without --nproc.
        signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached torchrun and the workers too: wait for them
                continue
        try:
            return int(code_file.read_text())
        except (OSError, ValueError):
            return 130 if rc in (-signal.SIGINT, 130) else rc


def cmd_list(args) -> int:
    from bioclf.inventory import param_counts
    from bioclf.spec import load_suite
    from bioclf.tracking.sqlite_view import StoreView, Unsure
    from bioclf.tracking.uri import resolve_tracking_uri

    suite = load_suite(args.spec, overrides=spec_overrides(args), seeds=args.seeds)
    counts = param_counts(suite.runs, suite.path.parent)  # by formula: no model built
    # A local SQLite store is read without MLflow (seconds of import); anything the view is not
    # sure of is read through MLflow, as is any other store.
    view = StoreView.open(resolve_tracking_uri(args.tracking_uri))
    if view is not None:
        try:
            lines = list_lines(view, suite, args.spec, counts)
        except Unsure:
            lines = None
        finally:
            view.close()
        if lines is not None:
            print("\n".join(lines))
            return EXIT_OK
    from bioclf.tracking import Tracker

    print("\n".join(list_lines(Tracker(args.tracking_uri), suite, args.spec, counts)))
    return EXIT_OK


def list_lines(store, suite, spec_path, counts) -> list[str]:
    """What ``list`` prints, read from ``store`` (a Tracker, or a StoreView with the same methods)."""
    exp_id = store.experiment_id(suite.name, create=False)
    latest: dict[str, object] = {}
    if exp_id is not None:
        for r in store.variant_runs(exp_id):  # newest first: keep the latest run per hash
            latest.setdefault(r.config_hash, r)
    folds = any(run.fold is not None for run in suite.runs)
    lines = [f"{suite.name} ({spec_path}): {len(suite.runs)} run(s), baseline {suite.baseline}; store {store.uri}",
             f"{'variant':<26} {'seed':>5}{' fold' if folds else ''} {'hash':<12} {'params':>13} {'status':<9} "
             f"{'val acc':>8} {'disk':>9}"]
    total = 0
    for run in suite.runs:
        # a run of an earlier release with the same config (re-tagged by the next `run`)
        found = latest.get(run.config_hash) or (latest.get(run.legacy_hash) if run.legacy_hash else None)
        status = found.status if found is not None else "-"
        acc = found.best_val_acc if found is not None else None
        acc_text = f"{100 * acc:.1f}%" if acc is not None else "-"
        size = store.artifact_bytes(found.run_id) if found is not None else 0
        total += size
        disk = f"{size / 1e6:.1f} MB" if found is not None else "-"
        fold = f" {run.fold:>4}" if folds else ""
        lines.append(f"{run.variant:<26} {run.seed:>5}{fold} {run.config_hash:<12} "
                     f"{counts[run.config_hash].total:>13,} {status:<9} {acc_text:>8} {disk:>9}")
    lines.append(f"artifacts of these runs: {total / 1e6:.1f} MB")
    return lines + scratch_lines(store)


def scratch_lines(store) -> list[str]:
    """What the store's scratch space holds: resume state of interrupted runs, and leftovers."""
    folders = store.scratch()
    resumable = [(f, n) for f, n, status in folders if status in ("RUNNING", "KILLED")]
    leftover = [(f, n) for f, n, status in folders if status not in ("RUNNING", "KILLED")]
    lines = []
    if resumable:
        lines.append(f"resume state of {len(resumable)} interrupted run(s): {sum(n for _, n in resumable) / 1e6:.1f} MB "
                     f"in {store.work_root()} (the next run of their spec continues them)")
    if leftover:
        names = ", ".join(f.name for f, _ in leftover[:3]) + (", ..." if len(leftover) > 3 else "")
        lines.append(f"left over: {len(leftover)} scratch folder(s) of runs that will never resume ({names}; "
                     f"{sum(n for _, n in leftover) / 1e6:.1f} MB in {store.work_root()}): safe to delete")
    return lines


def cmd_validate(args) -> int:
    from bioclf.spec import load_suite

    overrides = spec_overrides(args)
    for path in args.specs:
        suite = load_suite(path, overrides=overrides, seeds=args.seeds)
        print(f"ok: {path}: {len(suite.variants)} variant(s) x {len(suite.seeds)} seed(s) = {len(suite.runs)} run(s)")
    return EXIT_OK


def cmd_ui(args) -> int:
    from bioclf.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
        from bioclf.tracking import check_server

        check_server(uri)
        print(f"The tracking server serves the MLflow UI itself: open {uri} in a browser")
        return EXIT_OK
    if args.workers < 1:
        raise BioclfError(f"--workers {args.workers}: must be at least 1")
    from bioclf.tracking import Tracker
    from bioclf.tracking.uri import runs_url

    base = f"http://{args.host}:{args.port}"
    for name, exp_id in Tracker(uri).suite_experiments():
        print(f"  {name}: {runs_url(exp_id, base)}")
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port),
               "--workers", str(args.workers)]
    print(f"MLflow UI on {base} for {uri} (Ctrl-C to stop)")
    return serve(command)


def serve(command: list[str]) -> int:
    """Run a server until it ends, or until this process is interrupted (Ctrl-C) or terminated
    (SIGTERM): then the server and every process it started are stopped. ``mlflow ui`` starts
    uvicorn and several job consumers; stopping only the first process would leave them serving."""
    group = hasattr(os, "killpg")  # POSIX: the server leads a process group of its own
    proc = subprocess.Popen(command, env=os.environ.copy(), start_new_session=group)

    def terminated(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc, group)


def _stop_group(proc: subprocess.Popen, group: bool, grace_s: float = 10.0) -> None:
    """SIGTERM to the server's group (its children too, even when it already ended), SIGKILL
    to what is left after ``grace_s``."""
    if not group:
        if proc.poll() is None:
            proc.terminate()
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # no process of the group is left
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader; the group is gone when killpg finds nobody
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def cmd_check_data(args) -> int:
    import json

    from bioclf.datacheck import check_dataset

    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="img", desc="hashing", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        report = check_dataset(args.root, use_cache=not args.no_cache, workers=args.workers, progress=progress,
                               on_bad_image=args.on_bad_image)
    finally:
        if bar is not None:
            bar.close()
    tree = None
    if args.taxonomy is not None:
        from bioclf.taxonomy import describe_taxonomy, read_taxonomy

        tree = read_taxonomy(args.taxonomy, report.classes)  # BioclfError: one line naming the row, exit 2
    as_dict = report.to_dict()
    if tree is not None:
        as_dict["taxonomy"] = {"file": str(args.taxonomy), "ranks": list(tree.ranks),
                               "per_rank": tree.summary().to_dict(orient="records")}
    if args.json_file == "-":
        print(json.dumps(as_dict, indent=2))
    else:
        print(report.summary_text())
        if tree is not None:
            print(f"taxonomy: {describe_taxonomy(tree)}")
    if args.json_file and args.json_file != "-":
        Path(args.json_file).write_text(json.dumps(as_dict, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_file}", file=sys.stderr)
    if args.out:
        written = report.write(args.out)
        print(f"wrote {len(written)} files to {args.out}", file=sys.stderr)
    if report.problems:
        print(f"bioclf-exp: error: {report.problems[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.strict and report.warnings:
        print(f"bioclf-exp: error: --strict: {len(report.warnings)} warning(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_predict(args) -> int:
    from bioclf.predict import predict

    result = predict(
        args.folder, args.output, run_id=args.run_id, experiment=args.experiment, variant=args.variant,
        tracking_uri=args.tracking_uri, top5=args.top5, probs=args.probs, tta=args.tta, batch_size=args.batch_size,
        device=args.device, workers=args.workers, skip_bad=args.skip_bad, log_to_run=not args.no_log,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    skipped = f", {len(result.skipped)} unreadable image(s) left out (--skip-bad)" if result.skipped else ""
    print(f"wrote {result.output}: {result.n_images} image(s) predicted by run {result.run_id} "
          f"on {result.device}, tta {result.tta}{skipped}")
    for path in result.files[1:]:
        print(f"wrote {path}")
    if result.artifacts:
        print(f"logged {', '.join(result.artifacts)} to run {result.run_id}")
    return EXIT_OK


def cmd_fetch_data(args) -> int:
    from bioclf.fetch import fetch_data

    result = fetch_data(args.name, args.dest, download_dir=args.download_dir, val_fraction=args.val_fraction,
                        seed=args.seed, copy=args.copy)
    counts = ", ".join(f"{split} {n:,}" for split, n in result.counts.items())
    how = "" if result.already_there else f" ({result.linked:,} hard links, {result.copied:,} copies)"
    print(f"{result.name} in {result.dest}: {result.num_classes} classes; {counts}{how}")
    print(f"train on it: bioclf-exp run SPEC --set data.source=folder --set data.root={result.dest} "
          f"--set data.num_classes={result.num_classes}"
          + (" --set data.class_names_file=classes.txt" if (result.dest / "classes.txt").exists() else ""))
    if (result.dest / "taxonomy.csv").exists():
        tree = result.dest / "taxonomy.csv"
        print(f"its class tree: --set data.taxonomy={tree} (taxonomy_ablation.yaml; or bioclf-report --taxonomy {tree})")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "list": cmd_list, "validate": cmd_validate, "ui": cmd_ui,
            "check-data": cmd_check_data, "predict": cmd_predict, "fetch-data": cmd_fetch_data}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_BAD_INPUT
        return EXIT_BAD_INPUT if exc.code else EXIT_OK
    rc = _dispatch(args)
    if os.environ.get("BIOCLF_EXIT_CODE_FILE") and "RANK" in os.environ:  # a worker of --nproc's torchrun
        if os.environ["RANK"] == "0":
            Path(os.environ["BIOCLF_EXIT_CODE_FILE"]).write_text(str(rc))
        # The launcher exits with rank 0's code; a non-zero code here would only add
        # torchrun's multi-page failure report (kept for real crashes) to a one-line error.
        return EXIT_OK
    return rc


def _dispatch(args) -> int:
    try:
        return COMMANDS[args.command](args)
    except BioclfError as exc:
        if args.debug:
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the error: say it once
            print(f"bioclf-exp: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bioclf-exp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bioclf-exp list ... | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
