"""Image files read as the picture a person sees: every image the tool reads (dataset originals, brought edits,
thumbnails) goes through `open_image`, and `check_image` applies the same rules and the same conversion to a file
before any model loads, so that a file that passes the check is one `open_image` reads.

What a file becomes: 8-bit RGB with its EXIF orientation applied, as diffusers' `load_image` gives it, except where
`load_image`'s plain `.convert("RGB")` shows something else than an image viewer does:

- 16-bit samples are scaled to 8 bits (65535 -> 255, rounded): Pillow opens 16-bit grey as `I;16` (PNG, TIFF,
  JPEG 2000) or, from PGM, as `I` with its samples scaled to 0..65535, and its `convert` clips every value above
  255 to white. 16-bit RGB(A) PNGs and TIFFs Pillow already reads as 8-bit RGB(A) itself (the high byte).
- Transparency (an alpha band, or a palette's or PNG's transparent colour) is composited on white, as the judge's
  own processor (transformers' `convert_to_rgb`) and the report page show it; dropping it, as `load_image` does,
  shows whatever colour the transparent pixels happen to hold.

Refused, naming the rule (an image that breaks one cannot be edited or judged as the benchmark means it):
- 32-bit integer (`I`, other than PGM) and floating-point (`F`) samples: they have no standard display range, and
  viewers disagree; save such an image as an 8- or 16-bit PNG first.
- Several frames (animated GIF, PNG or WebP, a multi-page TIFF): the edit instruction is about one still picture,
  and the first frame is not necessarily the one it means. MPO, a camera JPEG with a preview or depth picture after
  the first, is read as its first, primary picture.
- An aspect ratio over 200: the Qwen-VL image processors of the judge and of the editor's text encoder refuse it
  (transformers' `smart_resize` raises). They take any small size (1x1 was measured), so no minimum applies.
- More pixels than Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89,478,485 by default): Pillow
  only warns up to twice that.

Imports nothing at module level beyond the standard library: `shards.dataset` imports it in the launcher.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import IO, Iterator

MAX_ASPECT_RATIO = 200
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
PLAIN_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageError(ValueError):
    """An image file that breaks one of the rules above; the message names the rule (the caller names the file)."""


def open_image(path: str):
    """An image file as 8-bit RGB, its EXIF orientation applied (see the module's docstring for what that means
    for 16-bit, transparent, 32-bit and animated files).

    Raises:
        ImageError: for a file that breaks a rule; OSError (or SyntaxError, ValueError) for one Pillow cannot read.
    """
    from PIL import ImageOps

    from shards.files import open_regular

    with open_regular(path) as f, _opened(f) as image:
        return to_rgb(ImageOps.exif_transpose(image))


def check_image(data: bytes) -> None:
    """Decode an image file's bytes the way `open_image` does, at reduced scale where the format allows (JPEG: the
    whole stream is still read, so a truncated file shows), and throw the pixels away.

    Raises:
        ImageError, OSError, SyntaxError, ValueError: as `open_image`.
    """
    from PIL import ImageOps

    with _opened(io.BytesIO(data)) as image:
        image.draft("RGB", (256, 256))
        to_rgb(ImageOps.exif_transpose(image))


@contextlib.contextmanager
def _opened(f: IO[bytes]) -> Iterator:
    """The opened image, once its header passed the size, aspect, frame and mode rules."""
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow warns between its limit and twice it, and raises above (at open, or for some formats while
        # decoding); the rule here is the limit itself, checked below with the size it names.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(f) as image:
                _check_header(image)
                yield image
        except Image.DecompressionBombError:
            raise ImageError(_too_large(None)) from None
        except (ImageError, OSError, SyntaxError, ValueError, MemoryError):
            raise
        except Exception as e:
            # Pillow's decoders raise more than OSError for a damaged file (a TIFF's TypeError "Missing dimensions"
            # while counting its pages, a DDS's NotImplementedError): one kind, so the file is named, not a traceback.
            raise OSError(f"{type(e).__name__}: {e}") from e


def _check_header(image) -> None:
    from PIL import Image

    width, height = image.size
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError(_too_large((width, height)))
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(f"its aspect ratio ({width}x{height}) is over {MAX_ASPECT_RATIO}:1, which the Qwen-VL "
                         "image processors of the judge and the editor refuse; crop or pad it")
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise ImageError(f"it has {frames} frames ({image.format}); the tool edits and judges one still picture: "
                         "save the frame you mean as a PNG")
    problem = _mode_problem(image)
    if problem:
        raise ImageError(problem)


def _too_large(size: tuple[int, int] | None) -> str:
    from PIL import Image

    shown = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "its size"
    return (f"{shown} is over {Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's decompression-bomb limit "
            "(PIL.Image.MAX_IMAGE_PIXELS); downscale it")


def _mode_problem(image) -> str | None:
    if image.mode in PLAIN_MODES + ALPHA_MODES + SIXTEEN_BIT_MODES or (image.mode, image.format) == ("I", "PPM"):
        return None
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        return (f"its samples are {kind} (Pillow mode {image.mode}, {image.format}), which have no standard "
                "display range; save it as an 8- or 16-bit PNG")
    return f"Pillow reads it in mode {image.mode} ({image.format}), which the tool does not know how to show as RGB"


def to_rgb(image):
    """An opened image as 8-bit RGB: 16-bit samples scaled (not clipped), transparency composited on white."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        image = _sixteen_to_eight(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _sixteen_to_eight(image):
    """A 16-bit grey image (0..65535) as 8-bit L, or LA where a transparent grey value is set."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(f"its samples ({image.mode}, {image.format}) run from {values.min()} to {values.max()}, "
                         "outside the 16-bit range 0..65535")
    grey = ((values + 128) // 257).astype(np.uint8)          # round(v / 257): 65535 -> 255, 32896 -> 128
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1))
    return Image.fromarray(grey)
