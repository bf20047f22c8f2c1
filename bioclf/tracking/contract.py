"""The tracking contract: every tag, metric and artifact name a run writes and a report reads.

One home for these names. ``bioclf.tracking`` writes them, ``analysis`` reads them, the tests
check the store against them, and the tables of ``docs/tracking.md`` are generated from the
rows below (``python -m bioclf.tracking.contract docs/tracking.md`` rewrites them in place; a
test fails when the page and this module disagree). Plain strings only: importing this module
imports neither MLflow nor torch, so the fast paths of the report can use it.

A change that readers rely on (a renamed or removed key, a new meaning) bumps
``CONTRACT_VERSION``; a new key beside the old ones does not.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONTRACT_VERSION = "1"

# ---------------------------------------------------------------- tags

ROLE = "bioclf.role"
ROLE_SUITE, ROLE_VARIANT = "suite", "variant"
VARIANT = "bioclf.variant"
SEED = "bioclf.seed"
CONFIG_HASH = "bioclf.config_hash"
CONFIG_HASH_V1 = "bioclf.config_hash_v1"
SUITE_HASH = "bioclf.suite_hash"
CONTRACT = "bioclf.contract_version"
ERROR = "bioclf.error"
SPEC = "bioclf.spec"
BASELINE = "bioclf.baseline"
VARIANTS = "bioclf.variants"
DATA_FINGERPRINT = "bioclf.data_fingerprint"
DATA_PIPELINE = "bioclf.data.pipeline"
HOST = "bioclf.host"
TRAIN_STAGES = "bioclf.data.train_stages"
EVAL_STAGES = "bioclf.data.eval_stages"
DIFF = "bioclf.diff"
VERDICT_PREFIX = "bioclf.verdict."  # + variant, on the suite run
# MLflow's own tags that the contract uses (mlflow.utils.mlflow_tags; spelled out here so that
# readers without MLflow imported can match them).
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
# On the experiment: its kind (MLflow 3's UI opens a model-training experiment on its runs, a
# GenAI one on traces) and its description.
EXPERIMENT_KIND = "mlflow.experimentKind"
KIND_MODEL_TRAINING = "custom_model_development"

# The ablation table on the suite run, per variant: metric "<variant>/<name>" (step 0; the last
# value is the current one). The runner logs the accuracy columns when the suite ends,
# bioclf-report all of them.
SUITE_TABLE_METRICS = ("val_acc_mean", "val_acc_std", "delta", "delta_ci_low", "delta_ci_high", "p_holm")


def suite_table_metric(variant: str, name: str) -> str:
    """The suite run's metric ``name`` of ``variant`` (characters MLflow refuses become "_")."""
    safe = re.sub(r"[^A-Za-z0-9_. -]", "_", variant)
    return f"{safe}/{name}"


# ---------------------------------------------------------------- artifacts

SPEC_DIR = "spec"
SUITE_MANIFEST = "suite.json"
REPORT_DIR = "report"
CONFIG = "config.yaml"
CLASSES = "classes.csv"
TAXONOMY = "taxonomy.csv"
FOLDS = "folds.csv"
FOLD = "bioclf.fold"
HISTORY = "history.csv"
PREDICTIONS_DIR = "predictions"
PREDICTIONS = f"{PREDICTIONS_DIR}/val.csv"
VAL_PROBS = f"{PREDICTIONS_DIR}/val_probs.npz"
CHECKPOINTS_DIR = "checkpoints"
BEST_CHECKPOINT = f"{CHECKPOINTS_DIR}/best.pt"
LAST_CHECKPOINT = f"{CHECKPOINTS_DIR}/last.pt"
SKIPPED_IMAGES = "data/skipped_images.tsv"
ERROR_TEXT = "error.txt"

# ---------------------------------------------------------------- the tables of docs/tracking.md
# Each row: (keys, meaning) or (kind, keys, meaning). Keys in a row share the meaning.

EXPERIMENT_ROWS = (
    ("name", (), "the spec's `name`"),
    ("tag", (EXPERIMENT_KIND,), f"`{KIND_MODEL_TRAINING}`: MLflow's UI opens the experiment on its runs table"),
    ("tag", (NOTE,), "the spec's `description` (the experiment's description in the UI)"),
)

SUITE_ROWS = (
    ("tag", (ROLE,), f"`{ROLE_SUITE}`"),
    ("tag", (SUITE_HASH,), "hash of the name and every (variant, seed, config hash) of the spec"),
    ("tag", (SPEC,), "absolute path of the spec file"),
    ("tag", (BASELINE,), "the variant every Δ is measured against"),
    ("tag", (VARIANTS,), "JSON list of the variants, in spec (table) order"),
    ("tag", (CONTRACT,), "`CONTRACT_VERSION` of the release that opened it"),
    ("tag", (NOTE,), "the spec's `description`"),
    ("tag", (DATA_FINGERPRINT,), "when every row of the suite reads the same data: its content fingerprint"),
    ("artifact", (f"{SPEC_DIR}/<file>.yaml",), "the spec file as written"),
    ("artifact", (SUITE_MANIFEST,), "`{name, description, baseline, seeds, variants, runs: [{variant, seed, "
                                    "config_hash}], diffs: {variant: {key: [baseline value, variant value]}}}`"),
    ("metric", tuple(f"<variant>/{m}" for m in SUITE_TABLE_METRICS),
     "the ablation table per variant: best val accuracy over seeds (mean, sd), Δ vs the baseline with its 95% "
     "interval, Holm-adjusted p. The accuracy columns are logged when the suite ends, all of them by "
     "`bioclf-report` (the last value is the current one)"),
    ("tag", (f"{VERDICT_PREFIX}<variant>",), "the row's verdict after Holm: `better`, `worse`, `within noise`, "
                                             "`baseline` (by `bioclf-report`)"),
    ("artifact", (f"{REPORT_DIR}/",), "the last `bioclf-report` of the suite: `index.html` (self-contained), "
                                      "`index.md`, `figures/`, `tables/` (docs/report.md)"),
    ("status", (), "`FINISHED` when every child finished or was skipped, `FAILED` if one failed, `KILLED` on Ctrl-C"),
)

VARIANT_ROWS = (
    ("tag", (PARENT_RUN,), "the suite run"),
    ("tag", (ROLE,), f"`{ROLE_VARIANT}`"),
    ("tag", (VARIANT,), "the variant name (table row)"),
    ("tag", (DIFF,), "what the variant changes from the baseline, short and readable: "
                     "`loss.label_smoothing 0.1→0.0; optimizer.lr 0.001→0.002`; `baseline` on the baseline"),
    ("tag", (SEED,), "the seed, as text"),
    ("tag", (FOLD,), "with `evaluation.folds`: the fold the run holds out, 0..K-1, as text"),
    ("tag", (CONFIG_HASH,), "12 hex digits: hash of the resolved config (seed included; workers, device, progress "
                            "bars excluded), version 2: see \"Config hash\""),
    ("tag", (CONFIG_HASH_V1,), "on runs written before config hash version 2 and recognised since: their original "
                               "hash"),
    ("tag", (SUITE_HASH,), "as on the parent"),
    ("tag", (CONTRACT,), "as on the parent"),
    ("tag", (DATA_FINGERPRINT,), "content fingerprint of the run's train + val data (see docs/data.md)"),
    ("tag", (HOST,), "host name of the machine where the run last started (the report flags the cost of runs of "
                     "one host whose times overlapped)"),
    ("tag", (DATA_PIPELINE,), "`data.pipeline` as resolved where the run last started (a resume may continue on "
                              "another device): `device` or `reference` (docs/data.md)"),
    ("tag", (TRAIN_STAGES, EVAL_STAGES), "where each component of the train / eval list ran: "
                                         "`workers: ... \\| device: ...`, in run order"),
    ("dataset input", ("mlflow.log_input",), "the same fingerprint as an MLflow dataset (name, digest, source, "
                                             "profile), input tag `mlflow.data.context=training`"),
    ("tag", (ERROR,), f"on FAILED runs: `<ExceptionType>: <first line>`, full traceback in the artifact "
                      f"`{ERROR_TEXT}`; on runs a lost Ray worker left KILLED: why (docs/distributed.md)"),
    ("run name", (), "`<variant>/seed<seed>` (runs before 2026-12: `<variant>-seed<seed>`; readers use the tags)"),
    ("params", ("every key of the resolved config, flattened with dots",),
     "`model.backbone`, `loss.label_smoothing`, `data.train_transforms` (lists and mappings as compact JSON), ..."),
    ("params", ("model.num_params", "model.num_trainable_params"), "exact integers"),
    ("params", ("data.num_classes",), "integer"),
    ("params", ("train.world_size",), "processes that trained the run (DDP; 1 otherwise): one optimizer step sees "
                                      "`world_size x data.batch_size` images"),
)

EPOCH_ROWS = (
    (("train_loss", "train_acc"), "mean loss / top-1 over the epoch's training batches (augmented; dropout on)"),
    (("val_loss", "val_acc", "val_top5_acc"), "on the validation split after the epoch"),
    (("lr",), "the learning rate the epoch trained with (a plateau drop shows from the next epoch)"),
    (("epoch_time_s",), "wall time of the epoch (train + validation)"),
    (("load_per_cpu",), "the machine's 1-minute load average divided by its CPU count at the end of the epoch, the "
                        "run's own work included (above ~1: the CPUs were oversubscribed; not logged on Windows)"),
    (("train_images_per_s",), "training throughput of the epoch"),
    (("data_time_s", "compute_time_s"), "the epoch's training time split into waiting for the data loader and the "
                                        "rest (a large data share: the loader is the bottleneck)"),
    (("train_steps",), "optimizer steps of the epoch (under DDP: `floor(ceil(n_train / world_size) / batch_size)`)"),
)

SUMMARY_ROWS = (
    (("best_val_acc", "best_val_top5_acc", "best_val_loss"), "val top-1 / top-5 / loss of the best checkpoint"),
    (("val_f1_macro", "val_precision_macro", "val_recall_macro"),
     "of the best checkpoint (scikit-learn, macro over the classes present in the validation labels, "
     "`zero_division=0`)"),
    (("best_epoch",), "the epoch of the best checkpoint"),
    (("epochs_run",), "epochs trained"),
    (("stopped_early",), "1 when early stopping ended the run, else 0 (runs from before it was logged: the report "
                         "infers it from `epochs_run` < `train.epochs`)"),
    (("train_time_s",), "sum of the epoch times"),
)

# The computational columns of the report (measured on the machine that trained the run).
COST_ROWS = (
    (("peak_rss_mb",), "peak resident memory of the run's process during the run (Linux; elsewhere since the "
                       "process started)"),
    (("peak_gpu_mem_mb",), "CUDA only: peak allocated"),
    (("checkpoint_mb",), "size of the kept best-model file"),
    (("inference_ms_per_image",), "median forward time of a batch of 16 at the evaluation image size, divided by "
                                  "16, on the training device"),
)

# Logged once (step 0) only where they apply.
CONDITIONAL_ROWS = (
    (("resize_cache_built_images",), "with `data.resize_cache`: the training images this run decoded and resized "
                                     "into the cache (0 when an earlier run of the dataset built them all)"),
    (("skipped_images",), f"with `data.on_bad_image: skip`, when images were skipped: how many (listed in "
                          f"`{SKIPPED_IMAGES}`)"),
)

ARTIFACT_ROWS = (
    ((CONFIG,), "the resolved config of the run"),
    ((CLASSES,), "`label,folder,name`: label index, class folder, display name"),
    ((FOLDS,), "with `evaluation.folds`: `path,label,fold` of every labelled image (train and val pooled), the "
               "split every fold run of the suite shares; the run's `val.csv` is its fold's images"),
    ((TAXONOMY,), "with a taxonomy (`data.taxonomy` or `data.synthetic.hierarchy`): the class tree the run trained "
                  "with, `class,<rank>,...`, one row per class in label order; the report's Table 7 reads it"),
    ((HISTORY,), "`epoch` and every per-epoch metric above, one row per epoch"),
    ((PREDICTIONS,), "one row per validation image, of the best checkpoint: `path,label,pred,top5,p_label,p_pred` "
                     "(`top5`: space-separated labels, best first; `p_label`: probability of the true label; "
                     "`p_pred`: of the prediction)"),
    ((VAL_PROBS,), "the best checkpoint's softmax over every class for every validation image, rows as in "
                   "`val.csv`: `numpy.load(f)['probs']`, float16, zip-compressed; what measures of the whole "
                   "distribution (calibration, hierarchical distances) are computed from without a re-run. Size: "
                   "~35 MB at 20,000 images x 1,000 classes, ~60 kB at 300 x 100"),
    ((BEST_CHECKPOINT,), "`{model, config, classes, class_names, epoch, metrics}` of the best epoch (load with "
                         "`torch.load(..., weights_only=True)`); fp16 weights with `checkpoint.dtype: fp16`; absent "
                         "with `checkpoint.keep: none`"),
    ((LAST_CHECKPOINT,), "`checkpoint.keep: best+last` or `all` only: model, optimizer, scheduler, scaler, "
                         "early-stopping and RNG state and history of the last epoch (always fp32)"),
    ((f"{CHECKPOINTS_DIR}/epoch_NNN.pt",), "`checkpoint.keep: all` only: the model of every epoch"),
    ((SKIPPED_IMAGES,), "`data.on_bad_image: skip` only, when images were skipped: `path<TAB>reason` per file "
                        "(metric `skipped_images` gives the count)"),
    ((ERROR_TEXT,), "FAILED runs only: the traceback"),
)


def _keys(rows) -> tuple[str, ...]:
    return tuple(key for row in rows for key in row[-2])


EPOCH_METRICS = _keys(EPOCH_ROWS)
SUMMARY_METRICS = _keys(SUMMARY_ROWS)
COST_METRICS = _keys(COST_ROWS)
CONDITIONAL_METRICS = _keys(CONDITIONAL_ROWS)
# What a finished run always has at step 0 (peak_gpu_mem_mb only on CUDA).
FINAL_METRICS = SUMMARY_METRICS + COST_METRICS
VARIANT_TAGS = tuple(k for kind, keys, _ in VARIANT_ROWS if kind == "tag" for k in keys)
SUITE_TAGS = tuple(k for kind, keys, _ in SUITE_ROWS if kind == "tag" for k in keys)


# ---------------------------------------------------------------- docs/tracking.md

def _code(keys) -> str:
    return ", ".join(f"`{k}`" if not k.startswith("every ") else k for k in keys)


def _table(header: tuple[str, ...], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [*row[:-2], _code(row[-2]), row[-1]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLES = {
    "experiment": lambda: _table(("kind", "key", "value"), EXPERIMENT_ROWS),
    "suite": lambda: _table(("kind", "key", "value"), SUITE_ROWS),
    "variant": lambda: _table(("kind", "key", "value"), VARIANT_ROWS),
    "epoch-metrics": lambda: _table(("metric", "meaning"), EPOCH_ROWS),
    "summary-metrics": lambda: _table(("metric", "meaning"), SUMMARY_ROWS),
    "cost-metrics": lambda: _table(("metric", "meaning"), COST_ROWS),
    "conditional-metrics": lambda: _table(("metric", "meaning"), CONDITIONAL_ROWS),
    "artifacts": lambda: _table(("path", "content"), ARTIFACT_ROWS),
}
_BLOCK = re.compile(r"(<!-- contract:([a-z-]+) -->\n)(?:.*?\n)??(<!-- /contract -->)", re.S)


def render_doc(text: str) -> str:
    """``text`` (docs/tracking.md) with every ``<!-- contract:NAME -->`` block regenerated."""
    def fill(match: re.Match) -> str:
        if match.group(2) not in TABLES:
            raise KeyError(f"docs/tracking.md: unknown contract block {match.group(2)!r}; known: {sorted(TABLES)}")
        return match.group(1) + TABLES[match.group(2)]() + "\n" + match.group(3)

    text = _BLOCK.sub(fill, text)
    return re.sub(r"Tracking contract \(version \d+\)", f"Tracking contract (version {CONTRACT_VERSION})", text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bioclf.tracking.contract docs/tracking.md  (regenerates its tables in place)",
              file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(render_doc(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
