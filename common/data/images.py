"""Reading image files and class folders into uint8 arrays, with per-file errors.

PIL (not `keras.utils.image_dataset_from_directory`) so that every file is checked up front: a corrupt
image is reported by name before training starts instead of crashing an epoch later, and the loader
works without TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Decoded pixels an image may have, checked from its header before decoding: below Pillow's own warning
# threshold (Image.MAX_IMAGE_PIXELS, ~89 Mpx; it raises only at twice that), so a decompression bomb is
# refused with a clear message instead of costing hundreds of MB. 64 Mpx is an 8000 x 8000 image.
MAX_PIXELS = 8_000 * 8_000


def read_image(path: str | Path, channels: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return an HxWxC uint8 array; `channels` 1 or 3 converts, `size` (h, w) resizes."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(f"{path}: image too large ({image.width}x{image.height} pixels)")
            if image.width == 0 or image.height == 0:
                raise DataError(f"{path}: empty image (0 pixels)")
            image.load()
            image = _flatten_alpha(_to_8bit(image))
            if channels == 1:
                image = image.convert("L")
            elif channels == 3 or image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            if size is not None and (image.height, image.width) != tuple(size):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    return array[..., None] if array.ndim == 2 else array


def _flatten_alpha(image):
    """Transparent pixels composited over black (the background of the suite's image data: Fashion-MNIST,
    radiographs) instead of keeping whatever colour the alpha hid."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB" if image.mode != "LA" else "L")
    return image


def _to_8bit(image):
    """16-bit and float greyscale images are rescaled to 0..255 rather than clipped. Integer images are
    scaled by the bit depth their data use: X-ray PNGs often store 12-bit values (at most 4095) in 16-bit
    pixels, and dividing those by 65535 would leave 16 grey levels."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        high = float(values.max()) if values.size else 0.0
        if image.mode == "F":
            scale = 255.0 / (65535.0 if high > 255 else max(high, 1.0))
        else:
            bits = max(8, int(high).bit_length())  # 12-bit data -> 4095, full 16-bit -> 65535
            scale = 255.0 / (2**bits - 1)
        from PIL import Image

        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    return image


def list_class_folders(root: Path) -> dict[str, list[Path]]:
    """{class name: image files}, sorted, failing on a missing root, no classes or an empty class."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (expected one sub-folder of images per class)")
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        classes[folder.name] = files
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s); need at least 2 sub-folders of images")
    return classes


def load_class_folders(
    root: str | Path, size: tuple[int, int], channels: int, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read every image under root/<class>/ into (x uint8 NxHxWxC, y int labels, class names).

    All unreadable files are collected and reported together, so one pass finds every bad file.
    """
    classes = list_class_folders(Path(root))
    names = class_names or list(classes)
    unknown = set(classes) - set(names)
    if unknown:
        raise DataError(f"{root}: class folders {sorted(unknown)} are not among the expected classes {names}")
    images, labels, bad = [], [], []
    for label, name in enumerate(names):
        for path in classes.get(name, []):
            try:
                images.append(read_image(path, channels=channels, size=size))
                labels.append(label)
            except DataError as exc:
                bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DataError(f"{len(bad)} unreadable image(s) in {root}: " + "; ".join(bad[:5]) + more)
    return np.stack(images), np.asarray(labels, dtype=np.int64), names
