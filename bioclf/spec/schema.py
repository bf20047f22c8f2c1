"""The one typed config of a run, validated strictly (unknown keys are errors).

Every field is documented here; ``docs/config.md`` is generated from these descriptions by
``python -m bioclf.spec.reference`` (tests/test_spec.py fails when the two drift). A spec YAML is a diff of this
config's defaults (through ``extends:`` and ``variants:``).

Registry-backed names (backbone, augmentation, optimizer, scheduler, loss) are checked
against their registries through one validator (``bioclf.registry.known_name``), so a typo
lists the valid choices before anything trains. The registries import neither torch nor this
module, so validating a spec takes a fraction of a second.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The registries import no torch and nothing of this module: validating a spec stays fast.
from bioclf.data.augmentations import normalize_pipeline
from bioclf.engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
from bioclf.models.catalog import BACKBONES_INFO, check_weights
from bioclf.registry import check_device_name, known_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)


class SyntheticConfig(Strict):
    """The built-in generated dataset (``data.source: synthetic``): class-dependent shapes,
    colours and textures, deterministic for a given seed, learnable in a few epochs."""

    num_classes: int = Field(10, ge=2, le=1000, description="Number of classes.")
    train_per_class: int = Field(40, ge=1, description="Training images per class.")
    val_per_class: int = Field(10, ge=1, description="Validation images per class.")
    test_images: int = Field(0, ge=0, description="Unlabeled test images (flat split).")
    image_size: int = Field(64, ge=8, le=1024, description="Side of the generated square images, in pixels.")
    seed: int = Field(0, description="Seed of the generator (independent of the training seed).")
    difficulty: float = Field(
        0.0, ge=0.0, le=1.0,
        description="0: classes told apart by colour alone; towards 1: colours overlap between classes, "
        "more noise and clutter, so a model must use the shapes and ablation rows differ.",
    )
    hierarchy: list[int] | None = Field(
        None,
        description="A class tree, as group sizes from the class upward: [3, 2] puts classes 0-2 in genus g0, "
        "3-5 in g1, ... and genera g0-g1 in family f0 (ranks named genus, family, order). Siblings share a "
        "background hue and differ in shape, so most mistakes stay inside a genus. The tree is the run's "
        "taxonomy unless data.taxonomy names a file. null: no tree.",
    )

    @field_validator("hierarchy")
    @classmethod
    def _group_sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not 1 <= len(value) <= 3:
            raise ValueError("data.synthetic.hierarchy: 1 to 3 group sizes (genus, family, order)")
        if value is not None and any(size < 2 for size in value):
            raise ValueError("data.synthetic.hierarchy: every group size must be at least 2")
        return value


class MixConfig(Strict):
    """One batch-mixing augmentation (MixUp or CutMix, torchvision.transforms.v2)."""

    alpha: float = Field(..., gt=0.0, description="The mixing weight is drawn from Beta(alpha, alpha).")
    p: float = Field(1.0, ge=0.0, le=1.0, description="Chance that a batch is mixed (else its labels stay whole).")


class DataConfig(Strict):
    """Where images come from and how they are turned into batches."""

    source: Literal["folder", "synthetic"] = Field(
        "synthetic", description="'folder': ROOT/train/<class>/*, ROOT/val/<class>/*; 'synthetic': generated data."
    )
    root: str | None = Field(None, description="Dataset root for source 'folder' (relative paths: to the spec file).")
    num_classes: int | None = Field(
        None, ge=2, description="Declared number of classes; checked against the data when training, and used "
        "by list / --dry-run to count parameters without scanning the folder (null: count the class folders).",
    )
    class_names_file: str | None = Field(
        None, description="Optional file with one display name per line, in label order (relative: to root)."
    )
    taxonomy: str | None = Field(
        None, description="A class tree as CSV (relative paths: to the spec file): a header naming the ranks from "
        "the class upward (class,genus,family), one row per class folder. Checked before training (every class "
        "once, one parent per value), hashed by content, logged as taxonomy.csv; needed by the taxonomy-aware "
        "losses and model.head.rank_weights, and read by bioclf-report's Table 7. See docs/taxonomy.md.",
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    train_transforms: list[Any] = Field(
        default_factory=lambda: ["random_resized_crop", "horizontal_flip"],
        description="Ordered augmentation components for training: a name, or {name: ..., param: value}.",
    )
    eval_transforms: list[Any] = Field(
        default_factory=lambda: [{"name": "resize", "size": 256}, {"name": "center_crop", "size": 224}],
        description="Ordered components for validation / prediction (no randomness).",
    )
    on_bad_image: Literal["error", "skip"] = Field(
        "error",
        description="Unreadable images (zero-byte, truncated, not an image, decompression bomb, no permission): "
        "'error' stops before training and lists the first ones; 'skip' leaves them out, logs the count and the "
        "list as an artifact.",
    )
    pipeline: Literal["auto", "device", "reference"] = Field(
        "auto",
        description="Where the transform lists run. 'device': loader workers only read the files; the batch is "
        "decoded on the training device (nvJPEG with CUDA), cropped / resized per image there with torchvision's "
        "own transforms, and every later component runs on the whole batch by its batch kernel (same "
        "distributions, tested). 'reference': torchvision v2 per PIL image in the workers, the report's "
        "pipeline. 'auto': 'device' on CUDA, 'reference' on a CPU. The resolved choice and where each component "
        "ran are logged (tag bioclf.data.pipeline).",
    )
    resize_cache: int | None = Field(
        None, ge=1,
        description="Read training images from copies resized once so their shorter side is this many pixels "
        "(about 1.15-1.2 x the crop size: 258 for 224), cached under $XDG_CACHE_HOME/bioclf/resized by dataset "
        "listing and shared by every variant of a suite; null: decode the originals every epoch. Source "
        "'folder' only; evaluation images are never cached. See docs/data.md.",
    )
    mixup: MixConfig | None = Field(
        None, description="MixUp of training batches, e.g. {alpha: 0.2}: each image blended with another of the "
        "batch, its target the same blend of the two labels (on the device the batch is on, after the transform "
        "list). With cutmix also set, each batch gets one of the two, at equal chance. null: off.",
    )
    cutmix: MixConfig | None = Field(
        None, description="CutMix of training batches, e.g. {alpha: 1.0}: a box of another image of the batch "
        "pasted in, the target weighted by the box's area. null: off.",
    )
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Normalisation mean (RGB).")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="Normalisation std (RGB).")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    eval_batch_size: int | None = Field(None, ge=1, description="Evaluation batch size (default: 2 x batch_size).")
    num_workers: int = Field(4, ge=0, description="DataLoader worker processes (not part of the config hash).")
    pin_memory: bool = Field(True, description="Pin host memory when training on CUDA (not hashed).")

    @field_validator("train_transforms", "eval_transforms")
    @classmethod
    def _check_pipeline(cls, value: list[Any]) -> list[dict[str, Any]]:
        return normalize_pipeline(value)

    @model_validator(mode="after")
    def _root_for_folder(self) -> "DataConfig":
        if self.source == "folder" and not self.root:
            raise ValueError("data.root is required when data.source is 'folder'")
        if self.source == "synthetic" and self.num_classes not in (None, self.synthetic.num_classes):
            raise ValueError(
                f"data.num_classes ({self.num_classes}) differs from data.synthetic.num_classes "
                f"({self.synthetic.num_classes}); set one of them"
            )
        return self


class HeadConfig(Strict):
    """The classification head on top of the backbone's pooled features.

    ``hidden_dim: null`` gives a plain ``Linear(features, classes)`` (with ``dropout_in`` before
    it if > 0). With a hidden layer: ``Dropout(dropout_in) -> Linear(features, hidden_dim) ->
    ReLU -> [BatchNorm1d] -> Dropout(dropout_hidden) -> Linear(hidden_dim, classes)``; a dropout of
    0 is left out of the module entirely.
    """

    hidden_dim: int | None = Field(512, ge=1, description="Width of the hidden layer; null for a plain linear head.")
    dropout_in: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout on the pooled features.")
    dropout_hidden: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout after the hidden layer.")
    batchnorm: bool = Field(True, description="BatchNorm1d after the hidden activation.")
    rank_weights: dict[str, float] | None = Field(
        None,
        description="A hierarchical head, e.g. {class: 1.0, genus: 0.5, family: 0.25}: besides the class "
        "output, one linear output per named rank of the taxonomy on the same features; the training loss is "
        "the weighted sum of each output's loss (the class output's is loss.name, the others cross-entropy "
        "with loss.label_smoothing), and predictions come from the class output. null: the class output only.",
    )

    @field_validator("rank_weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if value.get("class", 0) <= 0:
            raise ValueError("model.head.rank_weights: needs 'class' with a weight above 0 (predictions come "
                             "from the class output), e.g. {class: 1.0, genus: 0.5}")
        negative = [k for k, w in value.items() if w < 0]
        if negative:
            raise ValueError(f"model.head.rank_weights: weights must be at least 0; {negative[0]} is {value[negative[0]]}")
        return value

    @model_validator(mode="after")
    def _hidden_only_options(self) -> "HeadConfig":
        if self.hidden_dim is None and (self.batchnorm or self.dropout_hidden > 0):
            raise ValueError(
                "model.head: batchnorm and dropout_hidden need a hidden layer; with hidden_dim: null "
                "set batchnorm: false and dropout_hidden: 0"
            )
        return self


class ModelConfig(Strict):
    """Backbone, weights and head."""

    backbone: str = Field("resnext101_32x8d", description="A torchvision backbone from the registry.")
    pretrained: str | bool = Field(
        False,
        description="A torchvision weights name of the backbone (e.g. IMAGENET1K_V2, DEFAULT) or false.",
    )
    head: HeadConfig = Field(default_factory=HeadConfig)
    max_params: int = Field(100_000_000, ge=1, description="Parameter budget, checked before training.")
    channels_last: bool = Field(True, description="channels_last memory format (faster convolutions on GPU).")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return known_name(value, BACKBONES_INFO, "backbone")

    @field_validator("pretrained")
    @classmethod
    def _pretrained_name(cls, value: str | bool) -> str | bool:
        if value is True:
            return "DEFAULT"
        return value

    @model_validator(mode="after")
    def _known_weights(self) -> "ModelConfig":
        if self.pretrained:
            check_weights(self.backbone, str(self.pretrained))  # raises with the valid names
        return self


class LossConfig(Strict):
    """Training loss."""

    name: str = Field("cross_entropy", description="A loss from the registry.")
    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="Label smoothing: the target is mixed with a uniform distribution (every "
        "loss, and each output of a hierarchical head).")
    soft_labels_beta: float = Field(
        10.0, gt=0.0, description="soft_labels: target softmax(-beta * d(y, c) / d_max) over classes c, d the "
        "height of the lowest common ancestor in the taxonomy (Bertinetto et al. 2020); larger is closer to one-hot.")
    hxe_alpha: float = Field(
        0.1, ge=0.0, description="hxe: hierarchical cross-entropy, the term of the tree edge above a node of "
        "height h weighted exp(-alpha * h) (0: plain cross-entropy; larger: coarse ranks matter more).")

    @field_validator("name")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        return known_name(value, LOSSES, "loss")


class OptimizerConfig(Strict):
    """Optimizer; fields an optimizer does not use are ignored by it."""

    name: str = Field("adamw", description="An optimizer from the registry (adamw, adam, sgd).")
    lr: float = Field(1e-3, gt=0.0, description="Learning rate.")
    weight_decay: float = Field(1e-4, ge=0.0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam / AdamW betas.")

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return known_name(value, OPTIMIZERS, "optimizer")


class SchedulerConfig(Strict):
    """Learning-rate schedule, stepped once per epoch."""

    name: str = Field("plateau", description="plateau (ReduceLROnPlateau), cosine, step or none.")
    monitor: Literal["val_loss", "val_acc"] = Field("val_loss", description="Metric watched by plateau.")
    mode: Literal["min", "max"] = Field("min", description="Whether the monitored metric should fall or rise.")
    factor: float = Field(0.2, gt=0.0, lt=1.0, description="plateau: LR multiplier on a plateau.")
    patience: int = Field(3, ge=0, description="plateau: epochs without improvement before a drop.")
    threshold: float = Field(1e-4, ge=0.0, description="plateau: relative improvement that counts.")
    min_lr: float = Field(0.0, ge=0.0, description="Lower bound of the LR (plateau, cosine).")
    warmup_epochs: int = Field(0, ge=0, description="cosine: linear warm-up epochs.")
    step_size: int = Field(10, ge=1, description="step: epochs between drops.")
    gamma: float = Field(0.1, gt=0.0, lt=1.0, description="step: LR multiplier per drop.")

    @field_validator("name")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return known_name(value, SCHEDULERS, "scheduler")


class EarlyStoppingConfig(Strict):
    """Stop when the monitored metric has not improved by min_delta for patience epochs."""

    enabled: bool = Field(True, description="Turn early stopping on or off.")
    monitor: Literal["val_loss", "val_acc"] = Field("val_loss", description="Metric watched.")
    mode: Literal["min", "max"] = Field("min", description="Whether the metric should fall or rise.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(1e-5, ge=0.0, description="Smallest change that counts as an improvement.")


class EmaConfig(Strict):
    """An exponential moving average of the weights, updated after every optimizer step."""

    decay: float = Field(0.9998, gt=0.0, lt=1.0, description="Weight of the average at each step (0.9998: about "
                         "the last 5,000 steps).")
    warmup: bool = Field(True, description="Ramp the decay up as min(decay, (1 + t) / (10 + t)) at step t, so the "
                         "average does not keep the random initial weights for thousands of steps.")


class TrainConfig(Strict):
    """The training loop."""

    epochs: int = Field(50, ge=1, description="Maximum number of epochs.")
    seed: int = Field(42, description="Seed of the run (the spec's seeds: axis sets it per run).")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision on CUDA: auto = bf16 where supported, else fp16; always off on CPU."
    )
    grad_clip_norm: float | None = Field(None, gt=0.0, description="Clip the global gradient norm (null: off).")
    select_best: Literal["val_acc", "val_loss"] = Field(
        "val_acc", description="Which metric picks the best checkpoint (and the final metrics)."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (not part of the config hash).")
    deterministic: bool = Field(False, description="torch deterministic algorithms (slower on GPU).")
    compile: bool = Field(False, description="torch.compile the model (slow first epoch, faster after; GPU).")
    cudnn_benchmark: bool = Field(True, description="cuDNN autotuner for fixed input sizes (not hashed).")
    sync_batchnorm: bool = Field(
        False, description="Data-parallel runs (torchrun / --nproc) on CUDA: BatchNorm statistics over the whole "
        "global batch instead of each process's share (SyncBatchNorm; costs a collective per BatchNorm layer). "
        "No effect in a single process.",
    )
    ema: EmaConfig | None = Field(
        None, description="EMA of the weights, e.g. {decay: 0.9998}: when set, every validation, the best "
        "checkpoint, the archived models and predict use the averaged weights; a resume continues the average "
        "exactly. null: off.",
    )
    progress: bool = Field(True, description="Progress bars (not hashed; --quiet turns them off).")

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        return check_device_name(value)


class CheckpointConfig(Strict):
    """What a finished run keeps in the store. Resume state always exists while a run is running
    and is removed once it finishes (it stays for KILLED runs, so they can resume)."""

    keep: Literal["best", "best+last", "all", "none"] = Field(
        "best",
        description="best: the best epoch's model; best+last: also the last epoch's full state; all: also every "
        "epoch's model; none: no model files (metrics and predictions are still logged).",
    )
    dtype: Literal["fp32", "fp16"] = Field(
        "fp32", description="Precision of the archived model weights (fp16 halves the file; resume state is never fp16)."
    )


class EvaluationConfig(Strict):
    """How an image is scored: by every validation pass (each epoch, the best checkpoint's
    predictions) and, unless ``--tta`` says otherwise, by ``bioclf-exp predict``."""

    tta: Literal["none", "flip", "five_crop"] = Field(
        "none",
        description="Test-time augmentation: the softmax averaged over views of each evaluated image (val_loss is "
        "the loss of the average). none: one forward pass; flip: the image and its horizontal mirror (2x the "
        "evaluation compute); five_crop: its four corners and centre, each 0.875 of the side, resized back to the "
        "input size (5x; the view of torchvision's FiveCrop(224) after Resize(256), at the input's resolution).",
    )
    folds: int | None = Field(
        None, ge=2,
        description="K-fold out-of-fold evaluation: train and val are pooled and split into K folds, stratified by "
        "class, with every group of duplicate images (exact or near, from the data check) inside one fold; each "
        "variant x seed trains K runs (tag bioclf.fold), each validated on the fold it did not train on, so every "
        "labelled image is predicted once by a model that never saw it (or its twin). The report's statistics then "
        "use all of them. null: the val split. Also: bioclf-exp run SPEC --folds K. See docs/statistics.md.",
    )
    fold_seed: int = Field(0, description="Seed of the fold split (the same for every variant and training seed, "
                           "so runs are paired image by image).")
    fold: int | None = Field(
        None, ge=0, description="Which fold a run holds out, 0..K-1: set by the suite for each of its K runs; set it "
        "only to run one fold.")

    @model_validator(mode="after")
    def _fold_in_range(self) -> "EvaluationConfig":
        if self.fold is not None and (self.folds is None or self.fold >= self.folds):
            raise ValueError(f"evaluation.fold: {self.fold} needs evaluation.folds above it (folds are 0..K-1)")
        return self


TREE_LOSSES = ("soft_labels", "hxe")  # losses that need a taxonomy
SYNTHETIC_RANKS = ("class", "genus", "family", "order")  # the generated tree's rank names


def synthetic_ranks(hierarchy: list[int]) -> tuple[str, ...]:
    """The rank names of a data.synthetic.hierarchy: the class, then one per group size."""
    return SYNTHETIC_RANKS[: len(hierarchy) + 1]


class RunConfig(Strict):
    """The resolved config of one run (one variant x one seed)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @model_validator(mode="after")
    def _tree_for_tree_options(self) -> "RunConfig":
        data = self.data
        has_tree = data.taxonomy is not None or (data.source == "synthetic" and data.synthetic.hierarchy is not None)
        wants = [key for key, on in (("loss.name: " + self.loss.name, self.loss.name in TREE_LOSSES),
                                     ("model.head.rank_weights", self.model.head.rank_weights is not None)) if on]
        if wants and not has_tree:
            raise ValueError(f"{wants[0]} needs a class taxonomy: set data.taxonomy to a CSV (header class,genus,...)")
        if data.taxonomy is None and data.source == "synthetic" and data.synthetic.hierarchy is not None:
            check_rank_weights(self.model.head.rank_weights, synthetic_ranks(data.synthetic.hierarchy),
                               "data.synthetic.hierarchy")
        return self


def check_rank_weights(weights: dict[str, float] | None, ranks: tuple[str, ...], where: str) -> None:
    """ValueError when model.head.rank_weights names a rank the taxonomy does not have."""
    unknown = [rank for rank in (weights or {}) if rank not in ranks]
    if unknown:
        raise ValueError(f"model.head.rank_weights: {unknown[0]!r} is not a rank of the taxonomy ({where}); "
                         f"its ranks: {', '.join(ranks)}")


# Fields that change how fast or where a run happens, never what it computes: left out of
# the config hash so that changing them does not make a finished run look new.
UNHASHED_FIELDS = (
    "data.num_workers",
    "data.pin_memory",
    "train.device",
    "train.progress",
    "train.cudnn_benchmark",
    "train.compile",
    "checkpoint.keep",
    "checkpoint.dtype",
)

CONFIG_SECTIONS = tuple(RunConfig.model_fields)
