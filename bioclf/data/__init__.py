"""Datasets, the augmentation registry and loaders (DESIGN.md, "Data layout").

- images: ``load_rgb`` turns any image Pillow reads into 8-bit RGB, one rule per mode.
- transforms: the AUGMENTATIONS registry; spec pipeline -> torchvision v2 transform (the
  reference pipeline).
- fast: the same spec pipeline with fused kernels and a batch stage (``data.pipeline``).
- cache: pre-resized copies of the training images, built once per dataset listing
  (``data.resize_cache``).
- folder: ``ROOT/<split>/<class>/*`` and flat (test) folders.
- synthetic: the built-in generated dataset.
- scan: find unreadable images once per dataset listing (cached) and apply data.on_bad_image.
- loaders: DataConfig -> seeded DataLoaders.
"""

from bioclf.data.fast import PIPELINES, BatchTransform, build_pipeline
from bioclf.data.folder import ClassFolderDataset, FlatFolderDataset, read_class_names
from bioclf.data.images import IMAGE_EXTENSIONS, BadImageError, load_rgb
from bioclf.data.loaders import (
    DataBundle,
    batch_split,
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
from bioclf.data.synthetic import SyntheticDataset
from bioclf.data.transforms import AUGMENTATIONS, TENSOR_STAGE, build_transform, normalize_pipeline

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_EXTENSIONS",
    "PIPELINES",
    "TENSOR_STAGE",
    "BadImageError",
    "BatchTransform",
    "ClassFolderDataset",
    "DataBundle",
    "FlatFolderDataset",
    "ScanReport",
    "SyntheticDataset",
    "apply_bad_image_policy",
    "batch_split",
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
    "read_class_names",
    "scan_dataset",
    "scan_images",
]
