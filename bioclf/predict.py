"""``bioclf-exp predict``: a tracked run's best checkpoint on a flat folder of images -> a CSV.

The run is named by id, or is the best FINISHED variant run of an experiment (by
``best_val_acc``; ``variant`` narrows it). Its ``config.yaml`` (the resolved config: model and
eval transforms), ``classes.csv`` (label -> class folder) and ``checkpoints/best.pt`` come from
the store, so predicting needs nothing but the store and the images.

The output is the leaderboard format: ``image_name,pred_label``, one row per image, the image
name without its extension and the label as the class folder name (integer folders give
integers). Optional: a top-5 file (``image_name,top5,p_pred``) and a probabilities file
(``image_name`` and one column per class folder). Every file written is also logged as an
artifact ``predictions/<file name>`` of the run that predicted it.

Unreadable images (bioclf.data.scan) fail the command, naming the first few, unless
``skip_bad``: then they are left out of the CSV and counted. ``tta="flip"`` averages the softmax
of each image and of its horizontal mirror.

The steps, each a function: list and check the images -> resolve the run -> load its config,
classes and model -> the evaluation loop of ``bioclf.engine`` (with the run's own eval
pipeline: ``data.pipeline`` as the run resolved it, on this device) -> write -> log.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from bioclf.data.folder import list_flat_images
from bioclf.data.loaders import build_predict_loader
from bioclf.data.scan import scan_images
from bioclf.engine.checkpoint import load_checkpoint
from bioclf.engine.device import amp_dtype, resolve_device
from bioclf.engine.evaluate import TTA_MODES, predict_probs
from bioclf.errors import BioclfError
from bioclf.models import build_model
from bioclf.models.heads import rank_sizes_of
from bioclf.registry import DEVICE_NAMES, check_device_name
from bioclf.spec.loader import validate_config
from bioclf.tracking import RunRecord, Tracker, contract

CHECKPOINT = contract.BEST_CHECKPOINT
ERROR_EXAMPLES = 5
# Artifact names the tracking contract already uses under predictions/: never overwritten.
_RESERVED = {Path(contract.PREDICTIONS).name}

Printer = Callable[[str], None]


@dataclass
class PredictResult:
    run_id: str
    output: Path
    n_images: int  # rows written
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason) left out (skip_bad)
    files: list[Path] = field(default_factory=list)  # every file written (output first)
    artifacts: list[str] = field(default_factory=list)  # their artifact paths on the run
    device: str = "cpu"
    tta: str = "none"
    seconds: float = 0.0


def predict(
    folder: str | Path,
    output: str | Path,
    *,
    run_id: str | None = None,
    experiment: str | None = None,
    variant: str | None = None,
    tracking_uri: str | None = None,
    top5: str | Path | None = None,
    probs: str | Path | None = None,
    tta: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    skip_bad: bool = False,
    log_to_run: bool = True,
    progress: bool = True,
    echo: Printer = print,
) -> PredictResult:
    """Predict every image directly in ``folder`` with a tracked run (module docstring)."""
    started = time.perf_counter()
    folder, output = Path(folder).expanduser(), Path(output).expanduser()
    top5 = Path(top5).expanduser() if top5 else None
    probs = Path(probs).expanduser() if probs else None
    tta = _check_args(run_id, experiment, variant, tta, batch_size, output, [top5, probs])
    torch_device = _device(device)
    paths, bad = readable_images(folder, skip_bad)

    tracker = Tracker(tracking_uri)
    run = resolve_run(tracker, run_id, experiment, variant, echo)
    workdir = Path(tempfile.mkdtemp(prefix="bioclf-predict-"))
    try:
        cfg, classes, state = load_run(tracker, run.run_id, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    model = load_model(cfg, len(classes), state, torch_device, run.run_id)
    if tta is None:  # the run's own scoring (its validation numbers were measured with it)
        tta = cfg.evaluation.tta
    if workers is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_workers": int(workers)})})
    probabilities = infer(model, cfg, folder, paths, torch_device, batch_size, tta, progress)

    names = [Path(p).stem for p in paths]
    files = write_outputs(names, classes, probabilities, output, top5, probs)
    artifacts = log_outputs(tracker, run.run_id, files) if log_to_run else []
    return PredictResult(run_id=run.run_id, output=output, n_images=len(names),
                         skipped=[(Path(p).name, why) for p, why in bad], files=files, artifacts=artifacts,
                         device=str(torch_device), tta=tta, seconds=time.perf_counter() - started)


# ---------------------------------------------------------------- checking the input


def _check_args(run_id, experiment, variant, tta, batch_size, output: Path, extra: list[Path | None]) -> str:
    if bool(run_id) == bool(experiment):
        raise BioclfError("predict: give exactly one of --run RUN_ID or --experiment NAME")
    if variant and not experiment:
        raise BioclfError("--variant needs --experiment (a run id names one run already)")
    if tta is not None and tta not in TTA_MODES:
        raise BioclfError(f"--tta {tta!r}: valid: {', '.join(TTA_MODES)}")
    if batch_size is not None and batch_size < 1:
        raise BioclfError(f"--batch-size {batch_size}: must be at least 1")
    paths = [output.resolve()] + [p.resolve() for p in extra if p is not None]
    if len(set(paths)) != len(paths):
        raise BioclfError("predict: the output, --top5 and --probs files must be different files")
    return tta


def _device(name: str) -> torch.device:
    try:
        check_device_name(name)
    except ValueError:
        raise BioclfError(f"--device {name!r}: valid: {DEVICE_NAMES}") from None
    try:
        return resolve_device(name)
    except BioclfError as error:
        raise BioclfError(f"--device {name}: {str(error).split(': ', 1)[-1]}") from None


def readable_images(folder: Path, skip_bad: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """(the images of ``folder`` to predict, the unreadable ones left out with why)."""
    paths = _list_images(folder)
    bad = scan_images(paths)
    if bad and not skip_bad:
        shown = ", ".join(f"{Path(p).name} ({why})" for p, why in bad[:ERROR_EXAMPLES])
        more = ", ..." if len(bad) > ERROR_EXAMPLES else ""
        raise BioclfError(f"{folder}: {len(bad)} unreadable image(s) of {len(paths)}, e.g. {shown}{more}; "
                          "fix or remove them, or rerun with --skip-bad to leave them out")
    bad_paths = {p for p, _ in bad}
    keep = [p for p in paths if p not in bad_paths]
    if not keep:
        raise BioclfError(f"{folder}: all {len(paths)} images are unreadable")
    _check_names(keep)
    return keep, bad


def _list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise BioclfError(f"{folder}: image folder not found")
    images = list_flat_images(folder)
    if not images:
        subfolders = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        hint = (f"; it has sub-folders ({', '.join(sorted(subfolders)[:3])}...): predict reads a flat folder "
                "such as ROOT/test") if subfolders else ""
        raise BioclfError(f"{folder}: no images found (extensions: jpg, png, ... any case){hint}")
    return images


def _check_names(paths: list[str]) -> None:
    stems = Counter(Path(p).stem for p in paths)
    twins = sorted(name for name, n in stems.items() if n > 1)
    if twins:
        examples = ", ".join(sorted(Path(p).name for p in paths if Path(p).stem in set(twins[:3])))
        raise BioclfError(f"predict: {len(twins)} image name(s) occur with two extensions ({examples}); "
                          "image_name would not be unique in the CSV")


# ---------------------------------------------------------------- the run and its model


def resolve_run(tracker: Tracker, run_id: str | None, experiment: str | None, variant: str | None,
                echo: Printer) -> RunRecord:
    """The run named by id, or the best finished run of the experiment (of ``variant``) with a model."""
    if run_id:
        run = tracker.find_run(run_id)
        if run.status != "FINISHED":
            echo(f"predict: note: run {run_id} is {run.status}; using its best checkpoint so far")
        if not tracker.has_artifact(run_id, CHECKPOINT):
            raise BioclfError(f"run {run_id}: no {CHECKPOINT} in its artifacts (trained with checkpoint.keep: none, "
                              "or not finished?)")
        return run
    run, skipped = tracker.best_run(experiment, variant, require=CHECKPOINT)
    for other in skipped:
        echo(f"predict: note: run {other.run_id} has a higher best_val_acc but no {CHECKPOINT}; skipped")
    acc = run.best_val_acc
    echo(f"predict: experiment {experiment}: best finished run {run.run_id} (variant {run.variant}, "
         f"seed {run.seed}, best val acc {acc:.4f})" if acc is not None else
         f"predict: experiment {experiment}: run {run.run_id} (variant {run.variant}, no best_val_acc)")
    return run


def load_run(tracker: Tracker, run_id: str, workdir: Path):
    """(config, class folders in label order, model state) of the run, from its artifacts."""
    config_path = tracker.download_artifact(run_id, contract.CONFIG, workdir / "run")
    classes_path = tracker.download_artifact(run_id, contract.CLASSES, workdir / "run")
    checkpoint_path = tracker.download_artifact(run_id, CHECKPOINT, workdir / "run" / contract.CHECKPOINTS_DIR)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BioclfError(f"run {run_id}: config.yaml is not valid YAML ({str(error).splitlines()[0]})") from None
    cfg = validate_config(raw, f"run {run_id} config.yaml")
    frame = pd.read_csv(classes_path, dtype=str, keep_default_na=False)
    if "folder" not in frame or "label" not in frame:
        raise BioclfError(f"run {run_id}: classes.csv lacks the label / folder columns")
    frame = frame.assign(label=frame["label"].astype(int)).sort_values("label")
    if list(frame["label"]) != list(range(len(frame))):
        raise BioclfError(f"run {run_id}: classes.csv labels are not 0..K-1")
    return cfg, list(frame["folder"]), load_checkpoint(checkpoint_path)


def load_model(cfg, num_classes: int, state: dict, device: torch.device, run_id: str) -> torch.nn.Module:
    """The run's model with its best weights, in eval mode on ``device``."""
    weights = state.get("model", state) if isinstance(state, dict) else state
    model = build_model(cfg.model, num_classes, load_weights=False, rank_sizes=rank_sizes_of(weights))
    try:
        model.load_state_dict(weights)  # copies into the fp32 parameters: fp16 archives are cast back
    except RuntimeError as error:
        raise BioclfError(f"run {run_id}: {CHECKPOINT} does not fit the model of its config.yaml "
                          f"({str(error).splitlines()[0]})") from None
    model.float().to(device).eval()
    if device.type == "cuda" and cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def infer(model: torch.nn.Module, cfg, folder: Path, paths: list[str], device: torch.device,
          batch_size: int | None, tta: str, progress: bool) -> np.ndarray:
    """Softmax of every image of ``paths`` (files of ``folder``), in that order, through the
    run's eval pipeline and the engine's evaluation loop."""
    loader, stage = build_predict_loader(folder, cfg.data, batch_size, device.type)
    # The loader lists the folder itself; keep the images checked readable, in the same
    # order (workers get the dataset when iteration starts).
    loader.dataset.samples = list(paths)
    bar = tqdm(total=len(paths), unit="img", desc="predict", disable=not progress, file=sys.stderr, leave=False)
    try:
        return predict_probs(model, loader, device, amp_dtype(cfg.train.amp, device),
                             channels_last=cfg.model.channels_last, batch_transform=stage, tta=tta,
                             on_batch=bar.update)
    finally:
        bar.close()


# ---------------------------------------------------------------- the files


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def write_outputs(names: list[str], classes: list[str], probabilities: np.ndarray, output: Path,
                  top5: Path | None, probs: Path | None) -> list[Path]:
    """The leaderboard CSV and, when asked, the top-5 and probability files; rows by image name."""
    order = sorted(range(len(names)), key=lambda i: _natural_key(names[i]))
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    files = [_write_csv(output, ["image_name", "pred_label"], ([names[i], classes[ranked[i, 0]]] for i in order))]
    if top5 is not None:
        k = min(5, len(classes))
        files.append(_write_csv(top5, ["image_name", "top5", "p_pred"], (
            [names[i], " ".join(classes[c] for c in ranked[i, :k]), f"{probabilities[i, ranked[i, 0]]:.6f}"]
            for i in order)))
    if probs is not None:
        files.append(_write_csv(probs, ["image_name", *classes], (
            [names[i], *(f"{v:.6f}" for v in probabilities[i])] for i in order)))
    return files


def _write_csv(path: Path, header: list[str], rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
    return path


def log_outputs(tracker: Tracker, run_id: str, files: list[Path]) -> list[str]:
    """Every written file as an artifact ``predictions/<name>`` of the run; a name the contract
    reserves there (val.csv) is logged as ``predict-<name>``. Returns the artifact paths."""
    artifacts = []
    for path in files:
        if path.name not in _RESERVED:
            artifacts.append(tracker.log_file(run_id, path, contract.PREDICTIONS_DIR))
            continue
        staged = Path(tempfile.mkdtemp(prefix="bioclf-predict-log-"))
        try:
            copy = shutil.copyfile(path, staged / f"predict-{path.name}")
            artifacts.append(tracker.log_file(run_id, copy, contract.PREDICTIONS_DIR))
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return artifacts
