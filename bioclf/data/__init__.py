"""Datasets, the augmentation registry and loaders (DESIGN.md, "Data layout").

- images: ``load_rgb`` turns any image Pillow reads into 8-bit RGB, one rule per mode.
- augmentations: the AUGMENTATIONS registry (no torch): per component its parameter checks,
  its torchvision v2 transform (the reference), its stage and its optional batch kernel.
- transforms: the torch side: built transforms, the reference pipeline, the batch kernels.
- pipeline: where each component runs (``data.pipeline``): per sample in the workers, or
  decoded and augmented on the device batch.
- cache: pre-resized copies of the training images, built once per dataset listing
  (``data.resize_cache``).
- folder: ``ROOT/<split>/<class>/*`` and flat (test) folders.
- synthetic: the built-in generated dataset.
- scan: find unreadable images once per dataset listing (cached) and apply data.on_bad_image.
- loaders: DataConfig -> seeded DataLoaders.
"""

from __future__ import annotations

from bioclf.lazy import lazy_exports

# name -> the module that defines it. Imported on first use (PEP 562): the registry and the
# image rules are importable without torch, so validating a spec stays fast.
_WHERE = {
    "ClassFolderDataset": "bioclf.data.folder",
    "check_num_classes": "bioclf.data.folder",
    "FlatFolderDataset": "bioclf.data.folder",
    "read_class_names": "bioclf.data.folder",
    "IMAGE_EXTENSIONS": "bioclf.data.images",
    "BadImageError": "bioclf.data.images",
    "load_rgb": "bioclf.data.images",
    "DataBundle": "bioclf.data.loaders",
    "build_datasets": "bioclf.data.loaders",
    "build_loaders": "bioclf.data.loaders",
    "build_predict_loader": "bioclf.data.loaders",
    "check_dataset_images": "bioclf.data.loaders",
    "ScanReport": "bioclf.data.scan",
    "apply_bad_image_policy": "bioclf.data.scan",
    "check_image": "bioclf.data.scan",
    "dataset_listing_fingerprint": "bioclf.data.scan",
    "default_cache_dir": "bioclf.data.scan",
    "scan_dataset": "bioclf.data.scan",
    "scan_images": "bioclf.data.scan",
    "PIPELINES": "bioclf.data.pipeline",
    "BatchStage": "bioclf.data.pipeline",
    "Plan": "bioclf.data.pipeline",
    "build_pipeline": "bioclf.data.pipeline",
    "plan_pipeline": "bioclf.data.pipeline",
    "resolve_pipeline": "bioclf.data.pipeline",
    "SyntheticDataset": "bioclf.data.synthetic",
    "AUGMENTATIONS": "bioclf.data.augmentations",
    "TENSOR_STAGE": "bioclf.data.augmentations",
    "normalize_pipeline": "bioclf.data.augmentations",
    "build_transform": "bioclf.data.transforms",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _WHERE)
