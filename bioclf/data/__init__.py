"""Datasets, the augmentation registry and loaders (DESIGN.md, "Data layout").

- images: ``load_rgb`` turns any image Pillow reads into 8-bit RGB, one rule per mode.
- transforms: the AUGMENTATIONS registry: per component its torchvision v2 builder (the
  reference) and its optional batch kernel.
- pipeline: where each component runs (``data.pipeline``): per sample in the workers, or
  decoded and augmented on the device batch.
- cache: pre-resized copies of the training images, built once per dataset listing
  (``data.resize_cache``).
- folder: ``ROOT/<split>/<class>/*`` and flat (test) folders.
- synthetic: the built-in generated dataset.
- scan: find unreadable images once per dataset listing (cached) and apply data.on_bad_image.
- loaders: DataConfig -> seeded DataLoaders.
"""

from bioclf.data.folder import ClassFolderDataset, FlatFolderDataset, read_class_names
from bioclf.data.images import IMAGE_EXTENSIONS, BadImageError, load_rgb
from bioclf.data.loaders import (
    DataBundle,
    build_datasets,
    build_loaders,
    build_predict_loader,
    check_dataset_images,
)
from bioclf.data.scan import (
    ScanReport,
    apply_bad_image_policy,
    check_image,
    dataset_listing_fingerprint,
    default_cache_dir,
    scan_dataset,
    scan_images,
)
from bioclf.data.pipeline import PIPELINES, BatchStage, Plan, build_pipeline, plan_pipeline, resolve_pipeline
from bioclf.data.synthetic import SyntheticDataset
from bioclf.data.transforms import AUGMENTATIONS, TENSOR_STAGE, build_transform, normalize_pipeline

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_EXTENSIONS",
    "PIPELINES",
    "TENSOR_STAGE",
    "BadImageError",
    "BatchStage",
    "ClassFolderDataset",
    "DataBundle",
    "FlatFolderDataset",
    "Plan",
    "ScanReport",
    "SyntheticDataset",
    "apply_bad_image_policy",
    "build_datasets",
    "build_pipeline",
    "build_loaders",
    "build_predict_loader",
    "build_transform",
    "check_dataset_images",
    "check_image",
    "dataset_listing_fingerprint",
    "default_cache_dir",
    "load_rgb",
    "normalize_pipeline",
    "plan_pipeline",
    "read_class_names",
    "resolve_pipeline",
    "scan_dataset",
    "scan_images",
]
