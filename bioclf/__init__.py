"""bioclf: ablation suites for fine-grained biological image classification.

Importing the package has no side effects: no tracking store is touched, no model is built,
no file is written. The pieces:

- ``bioclf.spec``: load a YAML spec, inherit, expand variants x seeds, validate, hash.
- ``bioclf.data``: class-folder and generated datasets, the augmentation registry, loaders.
- ``bioclf.models``: the backbone registry, classification heads, parameter counting.
- ``bioclf.engine``: training and evaluation; reports through a small logger interface.
- ``bioclf.tracking``: the only module that imports mlflow.
- ``bioclf.runner``: runs a suite (one parent run, one child per variant x seed).
"""

__version__ = "0.1.0"
