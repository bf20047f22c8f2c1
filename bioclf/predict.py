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
"""

from __future__ import annotations

import csv
import logging
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
import torch
import yaml

from bioclf.errors import BioclfError

log = logging.getLogger(__name__)

TTA_MODES = ("none", "flip")
CHECKPOINT = "checkpoints/best.pt"
ERROR_EXAMPLES = 5
# Artifact names the tracking contract already uses under predictions/: never overwritten.
_RESERVED = {"val.csv"}


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


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _check_args(run_id, experiment, tta, batch_size, output: Path, extra: list[Path | None]) -> str:
    if bool(run_id) == bool(experiment):
        raise BioclfError("predict: give exactly one of --run RUN_ID or --experiment NAME")
    tta = tta or "none"
    if tta not in TTA_MODES:
        raise BioclfError(f"--tta {tta!r}: valid: {', '.join(TTA_MODES)}")
    if batch_size is not None and batch_size < 1:
        raise BioclfError(f"--batch-size {batch_size}: must be at least 1")
    paths = [output.resolve()] + [p.resolve() for p in extra if p is not None]
    if len(set(paths)) != len(paths):
        raise BioclfError("predict: the output, --top5 and --probs files must be different files")
    return tta


def _list_images(folder: Path) -> list[str]:
    from bioclf.data.folder import list_flat_images

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


def _resolve_run(client, run_id: str | None, experiment: str | None, variant: str | None, echo) -> object:
    from bioclf.tracking import best_run, find_run, has_artifact, run_summary

    if run_id:
        run = find_run(client, run_id)
        if run.info.status != "FINISHED":
            echo(f"predict: note: run {run_id} is {run.info.status}; using its best checkpoint so far")
        if not has_artifact(client, run_id, CHECKPOINT):
            raise BioclfError(f"run {run_id}: no {CHECKPOINT} in its artifacts (trained with checkpoint.keep: none, "
                              "or not finished?)")
        return run
    run, skipped = best_run(client, experiment, variant, require=CHECKPOINT)
    for other in skipped:
        echo(f"predict: note: run {other.info.run_id} has a higher best_val_acc but no {CHECKPOINT}; skipped")
    info = run_summary(run)
    acc = info["best_val_acc"]
    echo(f"predict: experiment {experiment}: best finished run {info['run_id']} (variant {info['variant']}, "
         f"seed {info['seed']}, best val acc {acc:.4f})" if acc is not None else
         f"predict: experiment {experiment}: run {info['run_id']} (variant {info['variant']}, no best_val_acc)")
    return run


def _load_run_files(client, run_id: str, workdir: Path):
    """(config, class folders in label order, model state) of the run."""
    import pandas as pd

    from bioclf.engine.checkpoint import load_checkpoint
    from bioclf.spec.loader import validate_config
    from bioclf.tracking import download_artifact

    config_path = download_artifact(client, run_id, "config.yaml", workdir / "run")
    classes_path = download_artifact(client, run_id, "classes.csv", workdir / "run")
    checkpoint_path = download_artifact(client, run_id, CHECKPOINT, workdir / "run" / "checkpoints")
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
    state = load_checkpoint(checkpoint_path)
    return cfg, list(frame["folder"]), state


def _build_model(cfg, num_classes: int, state: dict, device: torch.device, run_id: str):
    from bioclf.models import build_model

    model = build_model(cfg.model, num_classes, load_weights=False)
    weights = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(weights)  # copies into the fp32 parameters: fp16 archives are cast back
    except RuntimeError as error:
        raise BioclfError(f"run {run_id}: {CHECKPOINT} does not fit the model of its config.yaml "
                          f"({str(error).splitlines()[0]})") from None
    model.float().to(device).eval()
    if device.type == "cuda" and cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def _predict_probs(model, loader, device, dtype, tta: str, channels_last: bool, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    from bioclf.engine.device import autocast

    n = len(loader.dataset)
    out = np.zeros((n, 0), dtype=np.float32)
    chunks, indices = [], []
    bar = tqdm(total=n, unit="img", desc="predict", disable=not progress, file=sys.stderr, leave=False)
    try:
        for images, index in loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                probs = torch.softmax(model(images).float(), 1)
                if tta == "flip":
                    probs = (probs + torch.softmax(model(torch.flip(images, dims=[3])).float(), 1)) / 2
            chunks.append(probs.cpu().numpy().astype(np.float32))
            indices.append(index.numpy())
            bar.update(len(index))
    finally:
        bar.close()
    if chunks:
        out = np.concatenate(chunks)
        order = np.argsort(np.concatenate(indices), kind="stable")
        out = out[order]
    return out


def _write_csv(path: Path, header: list[str], rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _artifact_name(path: Path) -> str:
    return f"predict-{path.name}" if path.name in _RESERVED else path.name


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
    echo: Callable[[str], None] = print,
) -> PredictResult:
    """Predict every image directly in ``folder`` with a tracked run (module docstring)."""
    started = time.perf_counter()
    folder, output = Path(folder).expanduser(), Path(output).expanduser()
    top5 = Path(top5).expanduser() if top5 else None
    probs = Path(probs).expanduser() if probs else None
    tta = _check_args(run_id, experiment, tta, batch_size, output, [top5, probs])
    if variant and not experiment:
        raise BioclfError("--variant needs --experiment (a run id names one run already)")

    from bioclf.data.scan import scan_images
    from bioclf.engine.device import amp_dtype, resolve_device

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
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise BioclfError(f"--device {device!r}: valid: auto, cpu, mps, cuda or cuda:N")
    try:
        torch_device = resolve_device(device)
    except BioclfError as error:
        raise BioclfError(f"--device {device}: {str(error).split(': ', 1)[-1]}") from None

    from bioclf.data.loaders import build_predict_loader
    from bioclf.tracking import Tracker, log_file

    tracker = Tracker(tracking_uri)
    run = _resolve_run(tracker.client, run_id, experiment, variant, echo)
    run_id = run.info.run_id
    workdir = Path(tempfile.mkdtemp(prefix="bioclf-predict-"))
    try:
        cfg, classes, state = _load_run_files(tracker.client, run_id, workdir)
        model = _build_model(cfg, len(classes), state, torch_device, run_id)
        data_cfg = cfg.data if workers is None else cfg.data.model_copy(update={"num_workers": int(workers)})
        loader = build_predict_loader(folder, data_cfg, batch_size, torch_device.type)
        # The loader lists the folder itself; leave out what the scan found unreadable (skip_bad)
        # before the first batch is drawn (workers get the dataset when iteration starts).
        loader.dataset.samples = [p for p in loader.dataset.samples if p not in bad_paths]
        probabilities = _predict_probs(model, loader, torch_device, amp_dtype(cfg.train.amp, torch_device), tta,
                                       torch_device.type == "cuda" and cfg.model.channels_last, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    names = [Path(p).stem for p in loader.dataset.samples]
    order = sorted(range(len(names)), key=lambda i: _natural_key(names[i]))
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    files = [_write_csv(output, ["image_name", "pred_label"],
                        ([names[i], classes[ranked[i, 0]]] for i in order))]
    if top5 is not None:
        k = min(5, len(classes))
        files.append(_write_csv(top5, ["image_name", "top5", "p_pred"], (
            [names[i], " ".join(classes[c] for c in ranked[i, :k]), f"{probabilities[i, ranked[i, 0]]:.6f}"]
            for i in order)))
    if probs is not None:
        files.append(_write_csv(probs, ["image_name", *classes], (
            [names[i], *(f"{v:.6f}" for v in probabilities[i])] for i in order)))

    artifacts = []
    if log_to_run:
        for path in files:
            if path.name in _RESERVED:
                staged = workdir.with_name(workdir.name + "-log")
                staged.mkdir(exist_ok=True)
                try:
                    copy = shutil.copyfile(path, staged / _artifact_name(path))
                    artifacts.append(log_file(tracker.client, run_id, copy, "predictions"))
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
            else:
                artifacts.append(log_file(tracker.client, run_id, path, "predictions"))
    skipped = [(Path(p).name, why) for p, why in bad]
    return PredictResult(run_id=run_id, output=output, n_images=len(names), skipped=skipped, files=files,
                         artifacts=artifacts, device=str(torch_device), tta=tta,
                         seconds=time.perf_counter() - started)
