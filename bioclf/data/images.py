"""Open any image Pillow reads as an 8-bit RGB PIL image, the same way everywhere.

One rule per mode, so a dataset mixing JPEG, PNG, grayscale, 16-bit and CMYK files is seen
by the model on one scale:

- EXIF orientation is applied first (phones store portrait photos as rotated landscape).
- Transparency (RGBA, LA, PA, P or L/RGB with a ``transparency`` entry) is composited on
  WHITE, not dropped: dropping alpha exposes whatever colour the encoder left under
  transparent pixels (often black, sometimes garbage), which differs between tools.
- 16-bit ('I;16*') and 32-bit integer ('I') images are scaled from the full 16-bit range to
  8 bits (x / 257), never clipped: Pillow's own convert('L') clips everything above 255 to
  white. 'I' is what 16-bit PNG/TIFF/PGM may decode to, so it gets the 16-bit rule too.
- 32-bit float ('F') images are taken to be in [0, 1].
- 1-bit images map to 0 / 255; L, CMYK, YCbCr and the rest use Pillow's convert('RGB').
- ICC profiles are not applied (as in torchvision's default loader).
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

from PIL import Image, ImageOps

from bioclf.errors import BioclfError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# Background that transparent pixels are composited on (see the module docstring).
ALPHA_BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_file(path: str | Path) -> bool:
    """True for a non-hidden file whose extension is in IMAGE_EXTENSIONS (any case)."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


class BadImageError(BioclfError):
    """An image file that cannot be read; the message names the path, on one line.

    Raised inside a DataLoader worker, torch re-raises it in the main process as
    ``type(error)("Caught ... Original Traceback ...: <message>")``; the constructor takes the
    original message back out of that text, so the CLI still prints one line naming the path.
    """

    def __init__(self, message: str = "", *args):
        if isinstance(message, str) and "Original Traceback" in message:
            message = _message_from_worker_traceback(message)
        super().__init__(message, *args)


def _message_from_worker_traceback(text: str) -> str:
    # The traceback ends with "bioclf.data.images.BadImageError: <message>" (the message is
    # one line by construction); keep the worker's name as a short suffix.
    lines = [line for line in text.splitlines() if line.strip()]
    where = re.match(r"Caught \w+ (in DataLoader worker process \d+)", lines[0]) if lines else None
    for line in reversed(lines):
        head, sep, message = line.partition("BadImageError: ")
        if sep and not head.strip(" .").count(" "):
            return message + (f" ({where.group(1)})" if where else "")
    return lines[-1] if lines else text


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_image_bytes(path: str | Path) -> bytes:
    """The whole file at ``path`` in one read (Pillow's decoder would read it in ~4 kB pieces).

    Files that are not regular files (a FIFO named .jpg would block open()) are refused first;
    any failure is a BadImageError naming the path.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        kind = "dangling symlink" if os.path.islink(path) else "no such image file"
        raise BadImageError(f"{path}: {kind}") from None
    except OSError as error:
        raise BadImageError(f"{path}: cannot read image ({one_line(error.strerror or error)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadImageError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise BadImageError(f"{path}: no such image file") from None
    except PermissionError:
        raise BadImageError(f"{path}: cannot read image (permission denied)") from None
    except OSError as error:
        raise BadImageError(f"{path}: cannot read image ({one_line(error.strerror or error)})") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` fully and return it as an 8-bit RGB image (rules in the module docstring).

    Any failure is a BadImageError (a BioclfError) naming the path, never a PIL traceback.
    """
    return decode_rgb(read_image_bytes(path), path)


def decode_rgb(data: bytes, path: str | Path) -> Image.Image:
    """The encoded image ``data`` (read from ``path``, named in errors) as 8-bit RGB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now, so a truncated file fails here and not inside a transform
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the decoded image
            return to_rgb(image, copy=False)
    except FileNotFoundError:  # a plugin opening a sidecar file
        raise BadImageError(f"{path}: no such image file") from None
    except PermissionError:
        raise BadImageError(f"{path}: cannot read image (permission denied)") from None
    except BioclfError as error:
        raise BadImageError(f"{path}: {one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, struct.error, ...
        raise BadImageError(f"{path}: cannot read image ({type(error).__name__}: {one_line(error)})") from None


def jpeg_header(data: bytes) -> tuple[str, int] | None:
    """(mode, EXIF orientation) of a JPEG, from its header alone; None for any other file or a
    header Pillow cannot parse (the full decode then reports it)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                return None
            return image.mode, exif_orientation(image)
    except Exception:  # noqa: BLE001 - not parseable: decode_rgb names the problem
        return None


def exif_orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: exif_transpose ignores it too
        return 1
    return value if 1 <= value <= 8 else 1


def to_rgb(image: Image.Image, copy: bool = True) -> Image.Image:
    """Convert an already-loaded image of any mode to 8-bit RGB (see the module docstring).
    An RGB image is returned as a copy, or itself with ``copy=False``."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy() if copy else image
    if mode in _SIXTEEN_BIT_MODES:
        return _gray_array_to_rgb(image, lambda v: v / 257.0)
    if mode == "F":
        return _gray_array_to_rgb(image, lambda v: v * 255.0)
    if mode == "1":
        return image.convert("L").convert("RGB")
    if _has_alpha(image):
        return _composite_on_background(image.convert("RGBA"))
    try:
        return image.convert("RGB")
    except ValueError as error:  # a mode Pillow cannot turn into RGB (e.g. LAB)
        raise BioclfError(f"image mode {mode!r} cannot be converted to RGB ({error})") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _composite_on_background(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _gray_array_to_rgb(image: Image.Image, to_8bit) -> Image.Image:
    # numpy imported here: this module is on the path of `run --dry-run` (counting images), where
    # numpy's import is a fifth of the time, and only 16-bit and float images need it.
    import numpy as np

    values = to_8bit(np.asarray(image, dtype=np.float64))
    # Round, then clip only to guard against values outside the nominal range.
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
