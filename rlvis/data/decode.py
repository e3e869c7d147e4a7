"""Encoded image bytes → the fixed host canvas, or a named reason to skip the record.

Decode once on the host: simplejpeg (libjpeg-turbo, releases the GIL, and decodes enormous JPEGs
straight at a reduced DCT scale) first; PIL for what it cannot read (PNG, WebP, GIF, odd JPEGs). Every mode —
grayscale, CMYK, palette, alpha — is converted to the configured channels. The image is resized (aspect kept) so
its longer side equals the canvas and placed top-left; `valid` records its (height, width) so the environment
only crops real pixels.

A record that cannot be decoded raises `BadRecord(reason)`; the pipeline drops it and counts it under
`data/skipped/<reason>` (rlvis/data/pipeline.py). It never stops training.
"""

import io

import numpy as np
import simplejpeg
from PIL import Image

SKIP_REASONS = ("empty", "corrupt", "too_small", "too_large", "no_caption")


class BadRecord(Exception):
    """A record to skip; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _decode_with_pil(data: bytes, canvas: int, channels: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))  # PIL refuses more than 2 × Image.MAX_IMAGE_PIXELS: a bomb
        image.draft("RGB" if channels == 3 else "L", (canvas, canvas))  # JPEG only: decode at reduced scale
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))  # transparent → black, like padding
            image = Image.alpha_composite(background, image)
        return np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except Image.DecompressionBombError as error:
        raise BadRecord("too_large", str(error)) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # PIL's errors for unreadable/truncated data
        raise BadRecord("corrupt", str(error)) from error


def decode(data: bytes, canvas: int, channels: int = 3) -> np.ndarray:
    """Bytes → uint8 [H, W, channels], decoded at a reduced scale when the image is much larger than the canvas."""
    if not data:
        raise BadRecord("empty")
    try:
        image = simplejpeg.decode_jpeg(
            data, colorspace="RGB" if channels == 3 else "GRAY", min_height=canvas, min_width=canvas
        )
    except ValueError:  # not a JPEG libjpeg-turbo accepts: PNG, WebP, CMYK oddities, or truly broken
        image = _decode_with_pil(data, canvas, channels)
    return image.reshape(*image.shape[:2], channels)


def fit_to_canvas(image: np.ndarray, canvas: int, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize (aspect kept) so the longer side is `canvas`, pad bottom/right → (canvas image, valid (h, w))."""
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        raise BadRecord("too_small", f"{width}x{height} < {min_side} px")
    scale = canvas / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_h, new_w) != (height, width):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        image = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0))
        image = image.reshape(new_h, new_w, -1)
    out = np.zeros((canvas, canvas, image.shape[-1]), np.uint8)
    out[:new_h, :new_w] = image
    return out, np.asarray([new_h, new_w], np.int32)
