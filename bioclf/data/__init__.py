"""Datasets, the augmentation registry and loaders (DESIGN.md, "Data layout").

- images: ``load_rgb`` turns any image Pillow reads into 8-bit RGB, one rule per mode.
- transforms: the AUGMENTATIONS registry; spec pipeline -> torchvision v2 transform.
- folder: ``ROOT/<split>/<class>/*`` and flat (test) folders.
- synthetic: the built-in generated dataset.
- loaders: DataConfig -> seeded DataLoaders.
"""

from bioclf.data.folder import ClassFolderDataset, FlatFolderDataset, read_class_names
from bioclf.data.images import IMAGE_EXTENSIONS, load_rgb
from bioclf.data.loaders import DataBundle, build_datasets, build_loaders, build_predict_loader
from bioclf.data.synthetic import SyntheticDataset
from bioclf.data.transforms import AUGMENTATIONS, TENSOR_STAGE, build_transform, normalize_pipeline

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_EXTENSIONS",
    "TENSOR_STAGE",
    "ClassFolderDataset",
    "DataBundle",
    "FlatFolderDataset",
    "SyntheticDataset",
    "build_datasets",
    "build_loaders",
    "build_predict_loader",
    "build_transform",
    "load_rgb",
    "normalize_pipeline",
    "read_class_names",
]
