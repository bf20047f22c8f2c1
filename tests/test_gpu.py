"""The CUDA-only paths: nvJPEG decoding and the batch stage on the GPU, bf16 / fp16 autocast,
channels_last, compile, a folder dataset through the device pipeline.

Skipped without a CUDA device (the CPU suite covers the same code on the CPU device).
``python -m pytest -m gpu`` runs just these on a GPU machine.
"""

from __future__ import annotations

import math

import pytest
import torch

from bioclf.data.pipeline import ReadEncoded, build_pipeline, decode_batch
from bioclf.engine import train
from recording import RecordingLogger
from bioclf.spec import deep_merge
from bioclf.tracking import contract as C
from photos import MEAN, REPORT, STD, make_dataset, photo
from test_engine import tiny_config
from test_pipeline import encoded, jpeg_bytes

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPORT_AUG = REPORT[1:]


def test_batch_stage_on_the_gpu_equals_the_cpu():
    """Same seed -> same draws (taken on the CPU) -> the same pixels wherever the batch runs."""
    _, stage, _ = build_pipeline(REPORT, MEAN, STD, "device")
    read = ReadEncoded()
    batch = ReadEncoded.collate([(read(photo(96, 72, seed=i)), 0) for i in range(16)])[0]
    torch.manual_seed(0)
    on_cpu = stage(batch, torch.device("cpu"))
    torch.manual_seed(0)
    on_gpu = stage(batch, torch.device("cuda"), torch.channels_last)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    diff = (on_gpu.cpu() - on_cpu).abs() * 255 * min(STD)  # in 8-bit levels
    assert diff.mean() < 0.5, diff.mean()
    assert (diff > 8).float().mean() < 0.01  # nearest-neighbour ties may round the other way


def test_nvjpeg_decoding_is_close_to_libjpeg(tmp_path):
    """nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: within a few levels. A
    mixed batch (a PNG and a broken JPEG among them) still decodes, the broken one named."""
    files = {f"{i}.jpg": jpeg_bytes(photo(120, 90, seed=i)) for i in range(6)}
    batch = encoded(tmp_path, files)
    on_gpu = decode_batch(batch, torch.device("cuda"))
    on_cpu = decode_batch(batch, torch.device("cpu"))
    for a, b in zip(on_gpu, on_cpu):
        assert a.device.type == "cuda"
        diff = (a.cpu().double() - b.double()).abs()
        assert diff.mean() < 1.5 and diff.max() <= 16, (diff.mean(), diff.max())
    png = tmp_path / "p.png"
    photo(40, 30).save(png)
    broken = jpeg_bytes(photo(40, 30))
    batch = encoded(tmp_path, {**files, "broken.jpg": broken[: len(broken) // 2]})
    with pytest.raises(Exception, match="broken.jpg"):
        decode_batch(batch, torch.device("cuda"))


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
], ids=["bf16-cl-device", "fp16-scaler", "fp32-reference", "bf16-compile-workers"])
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


def test_folder_dataset_through_the_device_pipeline(tmp_path):
    make_dataset(tmp_path / "data", n=4)
    data = {"source": "folder", "root": str(tmp_path / "data"), "num_workers": 2, "batch_size": 4,
            "synthetic": {"num_classes": 2}, "pin_memory": True}
    log = RecordingLogger()
    train(gpu_config(data=data, train={"amp": "bf16"}), log, tmp_path / "run", quiet=True)
    assert log.tags[C.DATA_PIPELINE] == "device"  # auto on CUDA
    assert log.tags[C.TRAIN_STAGES].startswith("workers: read | device: decode")
