"""The CUDA-only paths: the batch stage on the GPU, bf16 / fp16 autocast, channels_last, compile.

Skipped without a CUDA device (the CPU suite covers the same code with the batch stage on the
CPU). ``python -m pytest -m gpu`` runs just these on a GPU machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioclf.data.fast import build_pipeline
from bioclf.engine import RecordingLogger, train
from bioclf.spec import deep_merge
from test_engine import tiny_config
from test_fast_pipeline import MEAN, REPORT, STD, photo

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPORT_AUG = REPORT[1:] + [{"name": "random_erasing", "p": 0.2, "scale": [0.02, 0.1]}]


def uint8_batch(n: int = 16, size: int = 48) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(photo(size, size, seed=i))).permute(2, 0, 1)
                        for i in range(n)])


@pytest.mark.parametrize("pipeline", ["fast", "fast_approx_hue"])
def test_batch_stage_on_the_gpu_equals_the_cpu(pipeline):
    """Same seed -> same draws (taken on the CPU) -> the same pixels wherever the batch runs."""
    _, stage = build_pipeline(REPORT_AUG, MEAN, STD, pipeline=pipeline, split="device")
    images = uint8_batch()
    torch.manual_seed(0)
    on_cpu = stage(images, torch.device("cpu"))
    torch.manual_seed(0)
    on_gpu = stage(images, torch.device("cuda"), torch.channels_last)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    diff = (on_gpu.cpu() - on_cpu).abs() * 255 * min(STD)  # in 8-bit levels
    assert diff.mean() < 0.5, diff.mean()
    assert (diff > 8).float().mean() < 0.01  # nearest-neighbour ties may round the other way


def gpu_config(**over):
    base = {"data": {"train_transforms": [{"name": "random_resized_crop", "size": 16, "scale": [0.8, 1.0]}]
                     + REPORT_AUG, "pin_memory": True},
            "train": {"device": "cuda", "epochs": 2}}
    return tiny_config(**deep_merge(base, over))


@pytest.mark.parametrize("over", [
    {"train": {"amp": "bf16"}, "model": {"channels_last": True}},
    {"train": {"amp": "fp16"}, "model": {"channels_last": False}},
    {"train": {"amp": "off"}, "data": {"pipeline": "reference"}},
    {"train": {"amp": "bf16", "compile": True}, "data": {"num_workers": 2}},
], ids=["bf16-cl-fast", "fp16-scaler", "fp32-reference", "bf16-compile-workers"])
def test_training_on_the_gpu(tmp_path, over):
    log = RecordingLogger()
    result = train(gpu_config(**over), log, tmp_path, quiet=True)
    assert result.epochs_run == 2
    for _, metrics in log.epochs:
        assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
        assert metrics["data_time_s"] >= 0 and metrics["compute_time_s"] > 0
    assert log.summary["peak_gpu_mem_mb"] > 0
    assert log.summary["inference_ms_per_image"] > 0
    # The whole val split was scored (4 classes x 8 images).
    import pandas as pd

    assert len(pd.read_csv(log.artifacts["predictions/val.csv"])) == 32
