"""The torch side of the augmentation registry: built transforms and batch kernels.

bioclf/data/augmentations.py holds the registry (names, parameter checks, which torchvision
v2 transform each component is, its stage and the name of its batch kernel) and imports no
torch. Here: ``build_component`` builds the torchvision transform of an item (the reference),
``build_transform`` the reference pipeline, and the BatchKernel classes run components on a
whole batch on the device (tests/test_pipeline.py compares every kernel with torchvision's own
kernel at the same parameters, and its draws with torchvision's ``make_params``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as nnf
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.functional import _get_inverse_affine_matrix

from bioclf.data.augmentations import BATCH_KERNELS, TENSOR_STAGE, component_spec, normalize_pipeline


def build_component(item: dict[str, Any]) -> Any:
    """The torchvision v2 transform of one normalised pipeline item."""
    spec = component_spec(item)
    return getattr(v2, spec.name)(**spec.kwargs)


def batch_kernel(item: dict[str, Any]) -> "BatchKernel | None":
    """The item's batch kernel, or None when it has none or its parameters are not covered."""
    name = BATCH_KERNELS.get(item["name"])
    if name is None:
        return None
    try:
        return globals()[name](build_component(item))
    except Unsupported:
        return None


# --- batch kernels ---------------------------------------------------------------------------

class Unsupported(ValueError):
    """Parameters a batch kernel does not cover: the component then runs per sample."""


class BatchKernel:
    """One component on a float batch (N, C, H, W) on the device.

    ``draw`` takes each sample's parameters from the distributions torchvision's transform
    draws from, with torch's global CPU RNG (seeded by the trainer and saved in resume
    checkpoints); ``apply`` is the computation at given parameters, equal to torchvision's
    tensor kernel (tested). They are separate so tests can compare both halves.
    """

    def __init__(self, transform: Any):
        self.t = transform

    def draw(self, n: int, height: int, width: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.draw(x.shape[0], x.shape[-2], x.shape[-1]))


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    return torch.empty(n, dtype=torch.float64).uniform_(float(low), float(high))


class FlipKernel(BatchKernel):
    """RandomHorizontalFlip / RandomVerticalFlip: each sample flips with probability p."""

    def draw(self, n, height, width):
        return {"flip": torch.rand(n) < self.t.p}

    def apply(self, x, params):
        dim = -1 if isinstance(self.t, v2.RandomHorizontalFlip) else -2
        taken = params["flip"].to(x.device)[:, None, None, None]
        return torch.where(taken, x.flip(dim), x)


class _WarpKernel(BatchKernel):
    """Rotation / affine: torchvision's inverse matrices, one grid_sample for the batch."""

    def __init__(self, transform):
        super().__init__(transform)
        fill = transform.fill.get("others", 0) if isinstance(transform.fill, dict) else transform.fill
        mode = InterpolationMode(transform.interpolation)
        if transform.center is not None or getattr(transform, "expand", False) or fill not in (0, None) \
                or mode not in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR):
            raise Unsupported("the batch warp covers centred, same-size, zero-fill nearest/bilinear warps")
        self.mode = mode.value
        self.masked = fill is not None  # torchvision's fill path: it multiplies by the sampled coverage

    def apply(self, x, params):
        return warp_batch(x, self.matrices(params), self.mode, self.masked)


def warp_batch(x: torch.Tensor, matrix: torch.Tensor, mode: str, masked: bool = True) -> torch.Tensor:
    """torchvision's ``_affine_grid`` + ``_apply_grid_transform`` with one (2, 3) inverse matrix
    per sample (centred pixel coordinates), batched: one grid and one grid_sample call."""
    n, c, h, w = x.shape
    theta = matrix.to(x.device, torch.float32).reshape(n, 2, 3)
    base = torch.empty(1, h, w, 3, dtype=torch.float32, device=x.device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=x.device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=x.device)[:, None])
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32, device=x.device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale).view(n, h, w, 2)
    source = x.float()
    if masked and mode == "bilinear":  # zero fill, but as torchvision: blended with the coverage
        source = torch.cat([source, torch.ones_like(source[:, :1])], 1)
        out = nnf.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)
        out, coverage = out[:, :c], out[:, c:]
        return (out * coverage).to(x.dtype)
    return nnf.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False).to(x.dtype)


def _inverse_matrices(angle, tx, ty, scale, sx, sy) -> torch.Tensor:
    """(n, 2, 3) inverse matrices from per-sample parameters (torchvision's own function)."""
    rows = zip(*(v.tolist() for v in (angle, tx, ty, scale, sx, sy)))
    return torch.tensor([_get_inverse_affine_matrix([0.0, 0.0], a, [x, y], s, [hx, hy])
                         for a, x, y, s, hx, hy in rows], dtype=torch.float64).reshape(-1, 2, 3)


class RotationKernel(_WarpKernel):
    def draw(self, n, height, width):
        return {"angle": _uniform(n, *self.t.degrees)}

    def matrices(self, params):
        # rotate_image's convention: the inverse matrix of -angle (mod 360), about the centre
        angle = params["angle"].double()
        zero = torch.zeros_like(angle)
        return _inverse_matrices(-torch.remainder(angle, 360.0), zero, zero, zero + 1.0, zero, zero)


class AffineKernel(_WarpKernel):
    def draw(self, n, height, width):
        """RandomAffine.make_params, vectorised (translation rounded half to even, as round())."""
        t = self.t
        zero = torch.zeros(n, dtype=torch.float64)
        params = {"angle": _uniform(n, *t.degrees), "tx": zero, "ty": zero, "scale": zero + 1.0,
                  "shear_x": zero, "shear_y": zero}
        if t.translate is not None:
            max_dx, max_dy = float(t.translate[0] * width), float(t.translate[1] * height)
            params["tx"] = torch.round(_uniform(n, -max_dx, max_dx))
            params["ty"] = torch.round(_uniform(n, -max_dy, max_dy))
        if t.scale is not None:
            params["scale"] = _uniform(n, *t.scale)
        if t.shear is not None:
            params["shear_x"] = _uniform(n, *t.shear[:2])
            if len(t.shear) == 4:
                params["shear_y"] = _uniform(n, *t.shear[2:])
        return params

    def matrices(self, params):
        return _inverse_matrices(*(params[k].double() for k in ("angle", "tx", "ty", "scale", "shear_x", "shear_y")))


# ColorJitter's ops, in the index order of its fn_idx permutation.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _grey(x: torch.Tensor) -> torch.Tensor:
    """torchvision's rgb_to_grayscale weights (ITU-R 601-2, as its tensor kernel rounds them)."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b)[:, None]


def hsv_hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """HSV hue + ``shift`` turns per sample, saturation and value kept (adjust_hue's maths,
    without the trip through an HSV tensor)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    m, _ = x.min(1)
    c = v - m
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.remainder(h + 6.0 * shift[:, None, None], 6.0)
    out = []
    for k0 in (5.0, 3.0, 1.0):
        k = torch.remainder(k0 + h, 6.0)
        out.append(v - c * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, 1)


class ColorJitterKernel(BatchKernel):
    """ColorJitter: per sample a random order of the four ops and a factor for each, as
    make_params draws them; each op is torchvision's float kernel (clamped to [0, 1])."""

    def draw(self, n, height, width):
        t = self.t
        order = torch.rand(n, 4).argsort(1)  # a uniform random permutation, as randperm(4)
        factors = torch.full((n, 4), float("nan"), dtype=torch.float64)
        for op, bounds in enumerate((t.brightness, t.contrast, t.saturation, t.hue)):
            if bounds is not None:
                factors[:, op] = _uniform(n, *bounds)
        return {"order": order, "factors": factors}

    def apply(self, x, params):
        order, factors = params["order"], params["factors"]
        present = [op for op in range(4) if not torch.isnan(factors[:, op]).all()]
        x = x.clone()
        for position in range(4):
            for op in present:
                rows = (order[:, position] == op).nonzero()[:, 0]
                if rows.numel() == 0:
                    continue
                index = rows.to(x.device)
                f = factors[rows, op].to(x.device, x.dtype)[:, None, None, None]
                part = x.index_select(0, index)
                if op == BRIGHTNESS:
                    part = part * f
                elif op == CONTRAST:
                    part = f * part + (1.0 - f) * _grey(part).mean(dim=(1, 2, 3), keepdim=True)
                elif op == SATURATION:
                    part = f * part + (1.0 - f) * _grey(part)
                else:
                    part = hsv_hue_shift(part, f[:, 0, 0, 0])
                x.index_copy_(0, index, part.clamp_(0.0, 1.0))
        return x


class ErasingKernel(BatchKernel):
    """RandomErasing: per sample p, then up to 10 tries for a box of the drawn area and aspect
    (RandomErasing.make_params, vectorised); boxes are filled with one masked write."""

    def __init__(self, transform):
        super().__init__(transform)
        self.log_ratio = [float(v) for v in transform._log_ratio]  # float32 logs, as torchvision draws between

    def draw(self, n, height, width):
        t = self.t
        area = height * width * torch.empty(n, 10, dtype=torch.float64).uniform_(t.scale[0], t.scale[1])
        aspect = torch.exp(torch.empty(n, 10, dtype=torch.float64).uniform_(*self.log_ratio))
        eh = torch.round(torch.sqrt(area * aspect)).long()
        ew = torch.round(torch.sqrt(area / aspect)).long()
        fits = (eh < height) & (ew < width)
        first = fits.int().argmax(1, keepdim=True)
        eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
        erase = (torch.rand(n) < t.p) & fits.any(1)
        top = (torch.rand(n, dtype=torch.float64) * (height - eh + 1)).floor().long()
        left = (torch.rand(n, dtype=torch.float64) * (width - ew + 1)).floor().long()
        return {"erase": erase, "top": top, "left": left, "height": eh, "width": ew}

    def apply(self, x, params):
        n, c, h, w = x.shape
        p = {k: v.to(x.device)[:, None, None, None] for k, v in params.items()}
        rows = torch.arange(h, device=x.device)[None, None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, None, :]
        box = p["erase"] & (rows >= p["top"]) & (rows < p["top"] + p["height"]) \
            & (cols >= p["left"]) & (cols < p["left"] + p["width"])
        if self.t.value is None:  # "random": normal noise, as torchvision
            fill = torch.randn(x.shape, dtype=torch.float32).to(x.device, x.dtype)
        else:
            fill = torch.tensor(self.t.value, dtype=x.dtype, device=x.device).expand(c)[None, :, None, None]
        return torch.where(box, fill, x)


def build_transform(items: Sequence[Any], mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL RGB image -> normalised float32 CHW tensor through the pipeline ``items``.

    ``items`` is a (normalised or raw) spec pipeline; an empty list gives just
    ToImage -> float -> Normalize.
    """
    image_stage, tensor_stage = [], []
    for item in normalize_pipeline(items):
        transform = build_component(item)
        (tensor_stage if item["name"] in TENSOR_STAGE else image_stage).append(transform)
    return v2.Compose(
        [
            *image_stage,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std]),
            *tensor_stage,
            # A plain Tensor, so collate and the model never see the tv_tensors subclass.
            v2.ToPureTensor(),
        ]
    )
