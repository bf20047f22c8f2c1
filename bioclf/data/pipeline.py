"""Where a spec pipeline runs: per sample in the loader workers, or on the device batch.

``data.pipeline`` (logged as tag bioclf.data.pipeline, with where each component ran):

- ``device``: the loader workers only read each file (and peek at its JPEG header). The
  training process decodes the batch on the training device (``torchvision.io.decode_jpeg``:
  nvJPEG, batched, with CUDA; libjpeg-turbo on a CPU, which is how CI tests this path), runs
  the sizing components (crops, resizes) per image with torchvision's own transforms on the
  device (their parameters drawn exactly as torchvision draws them, antialiased resizes), then
  every other component by its batch kernel on the whole batch (bioclf.data.transforms),
  Normalize, and the tensor stage (random erasing). Files that are not plain RGB / greyscale
  JPEGs (PNG, CMYK, ...) are decoded by the worker with load_rgb instead and join the same
  batch as pixels; a JPEG the device decoder refuses is decoded with load_rgb in the
  training process; a broken file is a BadImageError naming it (as on the CPU path). When a
  component has no batch kernel, the workers decode and run everything up to it (torchvision,
  per PIL image) and the batch stage runs the rest.
- ``reference``: torchvision v2 per PIL image in the workers (build_transform): the report's
  pipeline; the batch is only moved to the device.
- ``auto`` (default): ``device`` on a CUDA device, ``reference`` on a CPU (there the workers
  run in parallel to the training process; decoding in the training process would serialise
  it).

Random parameters of the device stages come from the training process's torch RNG (seeded
by the trainer, saved in resume checkpoints); those of per-sample components from the
workers' RNGs, as before.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms import v2

from bioclf.data.images import decode_rgb, jpeg_header, load_rgb, read_image_bytes
from bioclf.data.augmentations import STAGES, TENSOR_STAGE, normalize_pipeline
from bioclf.data.transforms import BatchKernel, batch_kernel, build_component, build_transform
from bioclf.errors import BioclfError

PIPELINES = ("auto", "device", "reference")
# JPEG modes the device decoder turns into RGB the way load_rgb does (others: load_rgb).
DEVICE_JPEG_MODES = ("RGB", "L")


def resolve_pipeline(name: str, device_type: str) -> str:
    """``auto`` -> ``device`` with CUDA, ``reference`` otherwise; the others as named."""
    if name not in PIPELINES:
        raise ValueError(f"data.pipeline: unknown pipeline {name!r}; valid: {', '.join(PIPELINES)}")
    if name == "auto":
        return "device" if device_type == "cuda" else "reference"
    return name


# --- the plan: which component runs where -------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    pipeline: str  # "device" | "reference" (resolved)
    sample: tuple[dict, ...]  # per sample in the workers (torchvision on the PIL image)
    sizing: tuple[dict, ...]  # per decoded image on the device (only when ``sample`` is empty)
    batch: tuple[dict, ...]  # by their batch kernels on the device batch (image, then tensor stage)

    @property
    def decodes_on_device(self) -> bool:
        return self.pipeline == "device" and not self.sample

    def describe(self) -> str:
        """``workers: ... | device: ...``, in run order (logged with the run)."""
        names = lambda items: [item["name"] for item in items]  # noqa: E731
        if self.pipeline == "reference":
            image = [n for n in names(self.sample) if n not in TENSOR_STAGE]
            tensor = [n for n in names(self.sample) if n in TENSOR_STAGE]
            return f"workers: {', '.join(['decode', *image, 'normalize', *tensor])} | device: -"
        image = [n for n in names(self.batch) if n not in TENSOR_STAGE]
        tensor = [n for n in names(self.batch) if n in TENSOR_STAGE]
        device = [*image, "normalize", *tensor]
        if self.decodes_on_device:
            return f"workers: read | device: {', '.join(['decode', *names(self.sizing), *device])}"
        return f"workers: {', '.join(['decode', *names(self.sample)])} | device: {', '.join(device)}"


def plan_pipeline(items: Sequence[Any], pipeline: str) -> Plan:
    """Split the (normalised or raw) spec pipeline ``items`` for the resolved ``pipeline``.

    Device: leading sizing components run per image on the device after decoding; every later
    component needs a batch kernel. A component that has none (or a sizing one after the
    start) and everything before it run per sample in the workers instead.
    """
    items = tuple(normalize_pipeline(items))
    if pipeline == "reference":
        return Plan("reference", items, (), ())
    if pipeline != "device":
        raise ValueError(f"pipeline must be device or reference after resolving, got {pipeline!r}")
    tensor = tuple(item for item in items if item["name"] in TENSOR_STAGE)
    image = tuple(item for item in items if item["name"] not in TENSOR_STAGE)
    if any(batch_kernel(item) is None for item in tensor):  # normalisation happens on the batch
        return Plan("reference", items, (), ())
    lead = 0
    while lead < len(image) and STAGES[image[lead]["name"]] == "sizing":
        lead += 1
    cut = lead
    for index in range(lead, len(image)):
        if STAGES[image[index]["name"]] == "sizing" or batch_kernel(image[index]) is None:
            cut = index + 1
    if cut == lead:
        return Plan("device", (), image[:lead], image[lead:] + tensor)
    return Plan("device", image[:cut], (), image[cut:] + tensor)


def build_pipeline(items: Sequence[Any], mean: Sequence[float], std: Sequence[float],
                   pipeline: str) -> tuple[Callable, "BatchStage", Plan]:
    """(per-sample transform for the workers, batch stage, plan) of a resolved ``pipeline``."""
    plan = plan_pipeline(items, pipeline)
    if plan.pipeline == "reference":
        return build_transform(plan.sample, mean, std), BatchStage.move_only(), plan
    stage = BatchStage(mean, std, sizing=[build_component(i) for i in plan.sizing],
                       kernels=[batch_kernel(i) for i in plan.batch if i["name"] not in TENSOR_STAGE],
                       tensor_kernels=[batch_kernel(i) for i in plan.batch if i["name"] in TENSOR_STAGE],
                       decode=plan.decodes_on_device)
    if plan.decodes_on_device:
        return ReadEncoded(), stage, plan
    return v2.Compose([*(build_component(i) for i in plan.sample), v2.ToImage(), v2.ToPureTensor()]), stage, plan


# --- the workers' side of the device pipeline ---------------------------------------------------

class ReadEncoded:
    """Per-sample transform of the device pipeline: a path -> ``(data, path, orientation)``.

    ``data`` is the file's bytes (1-d uint8) for a JPEG the device decoder takes, else the
    image decoded by load_rgb (uint8 CHW; orientation already applied: 1). A PIL image (the
    generated dataset) comes out as its pixels. ``collate`` batches such samples.
    """

    takes_path = True

    def __call__(self, image) -> tuple[torch.Tensor, str, int]:
        if not isinstance(image, (str, os.PathLike)):
            return pil_to_uint8(image), "", 1
        path = str(image)
        data = read_image_bytes(path)
        header = jpeg_header(data)
        if header is not None and header[0] in DEVICE_JPEG_MODES:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), path, header[1]
        return pil_to_uint8(decode_rgb(data, path)), path, 1

    @staticmethod
    def collate(samples: list) -> tuple["EncodedBatch", torch.Tensor]:
        """[((data, path, orientation), label)] -> (EncodedBatch, labels)."""
        encoded, labels = zip(*samples)
        return EncodedBatch(*map(list, zip(*encoded))), torch.as_tensor(labels)


@dataclass
class EncodedBatch:
    items: list[torch.Tensor]  # 1-d: JPEG bytes; 3-d: decoded uint8 CHW pixels
    paths: list[str]
    orientations: list[int]

    def __len__(self) -> int:
        return len(self.items)

    def pin_memory(self) -> "EncodedBatch":
        return self  # the decoder reads the bytes on the host


def pil_to_uint8(image) -> torch.Tensor:
    """RGB PIL image -> uint8 CHW tensor."""
    return v2.functional.pil_to_tensor(image)


# --- the training process's side --------------------------------------------------------------

def decode_batch(batch: EncodedBatch, device: torch.device) -> list[torch.Tensor]:
    """Every image of ``batch`` as uint8 CHW on ``device``, EXIF orientation applied."""
    out: list[torch.Tensor | None] = [None] * len(batch)
    jpegs = [i for i, item in enumerate(batch.items) if item.dim() == 1]
    if jpegs:
        decoded = _decode_jpegs([batch.items[i] for i in jpegs], [batch.paths[i] for i in jpegs], device)
        for i, (image, oriented) in zip(jpegs, decoded):
            out[i] = image if oriented else apply_orientation(image, batch.orientations[i])
    for i, item in enumerate(batch.items):
        if item.dim() == 3:
            out[i] = item.to(device, non_blocking=True)
    return out


def _decode_jpeg(data, device: torch.device):
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they are
        # what decodes JPEGs with nvJPEG today. A corrupt-data warning is an error here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("error", UserWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _decode_jpegs(datas: list[torch.Tensor], paths: list[str],
                  device: torch.device) -> list[tuple[torch.Tensor, bool]]:
    """(image, orientation applied) per JPEG: one batched decode; if it fails, image by image,
    and an image the decoder refuses by load_rgb (which names a broken file)."""
    try:
        return [(image, False) for image in _decode_jpeg(datas, device)]
    except (RuntimeError, UserWarning):
        pass
    out = []
    for data, path in zip(datas, paths):
        try:
            out.append((_decode_jpeg(data, device), False))
        except (RuntimeError, UserWarning):
            out.append((pil_to_uint8(load_rgb(path)).to(device), True))
    return out


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """EXIF orientation 1-8 on a CHW tensor, as Pillow's exif_transpose."""
    if orientation in (5, 6, 7, 8):  # the stored image is transposed relative to the view
        image = {5: image.transpose(-1, -2),  # TRANSPOSE
                 6: image.transpose(-1, -2).flip(-1),  # ROTATE_270
                 7: image.transpose(-1, -2).flip(-1).flip(-2),  # TRANSVERSE
                 8: image.transpose(-1, -2).flip(-2)}[orientation]  # ROTATE_90
    elif orientation == 2:
        image = image.flip(-1)
    elif orientation == 3:
        image = image.flip(-1).flip(-2)
    elif orientation == 4:
        image = image.flip(-2)
    return image.contiguous()


class BatchStage:
    """Loader batch -> normalised float32 batch on the device.

    Call: ``stage(images, device=None, memory_format=None)``. ``images`` is what the loader
    yields: an EncodedBatch (decoded and sized here), a uint8 NCHW batch (the workers ran the
    first components), or a float batch the workers already normalised (reference: only moved).
    Then the batch kernels on [0, 1] images, Normalize, the tensor-stage kernels.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, sizing: Sequence[Any] = (),
                 kernels: Sequence[BatchKernel] = (), tensor_kernels: Sequence[BatchKernel] = (),
                 decode: bool = False, normalize: bool = True):
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.sizing = list(sizing)
        self.kernels = list(kernels)
        self.tensor_kernels = list(tensor_kernels)
        self.decode = decode
        self.normalize = normalize
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def move_only(cls) -> "BatchStage":
        """The stage of the reference pipeline: its workers already finished every image, so
        the batch is only moved to the device (and put in ``memory_format``)."""
        return cls((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), normalize=False)

    def __call__(self, images, device: torch.device | str | None = None,
                 memory_format: torch.memory_format | None = None) -> torch.Tensor:
        device = torch.device(device) if device is not None else torch.device("cpu")
        if isinstance(images, EncodedBatch):
            x = self._size(decode_batch(images, device))
        elif images.dtype == torch.uint8:
            x = images.to(device, non_blocking=True).float().div_(255.0)
        else:
            x = images.to(device, non_blocking=True)
        if self.normalize:
            for kernel in self.kernels:
                x = kernel(x)
            mean, std = self._constants(device)
            x = (x - mean).div_(std)
            for kernel in self.tensor_kernels:
                x = kernel(x)
        if memory_format is not None:
            x = x.contiguous(memory_format=memory_format)
        return x

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalize's mean and std on ``device``, made once (not a host-to-device copy per batch)."""
        if device not in self._on_device:
            self._on_device[device] = (torch.tensor(self.mean, device=device)[:, None, None],
                                       torch.tensor(self.std, device=device)[:, None, None])
        return self._on_device[device]

    def _size(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The sizing components per image (torchvision's transforms, on float 0..255 pixels so
        resizes do not round), stacked into a [0, 1] batch."""
        sized = []
        for image in images:
            image = image.float()
            for transform in self.sizing:
                image = transform(image)
            sized.append(image)
        shapes = {tuple(image.shape) for image in sized}
        if len(shapes) > 1:
            raise BioclfError(f"data: images reach the batch at different sizes ({sorted(shapes)[:2]} ...); "
                              "start the transform list with a crop or resize to a fixed size")
        return torch.stack(sized).div_(255.0)
