"""DICOM images as uint8 arrays, displayed the way a radiologist's viewer shows them.

Stored pixel values are not display values: the modality LUT (rescale slope/intercept, e.g. to
Hounsfield units) comes first, then the VOI LUT or window centre/width the modality chose, and
MONOCHROME1 images (bright = low values, common for X-ray) are inverted so bone is white. Files that
are not DICOM, carry no image (structured reports, RT plans) or cannot be decoded fail with a
DataError naming the file and, where it helps, the package that decodes its transfer syntax.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
# Decoded pixels (rows x columns x frames x samples) a DICOM may declare, checked from its header before
# decoding. The display conversion works in float64 (~25 bytes a pixel over its copies), so this is lower
# than for plain images: 25 Mpx covers radiographs and mammograms (4096 x 5120) in ~600 MB.
MAX_PIXELS = 5_000 * 5_000
DECODER_HINT = ("install a decoder for it: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
                "(JPEG, JPEG 2000) or python-gdcm")


def is_dicom(path: str | Path) -> bool:
    """True for a .dcm-like suffix or the 'DICM' magic at byte 128 (files without a suffix are common)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_domain(path: str | Path) -> tuple[str | None, str | None]:
    """(Modality, BodyPartExamined) from the header, upper-cased, None when absent or empty. Only these two
    elements are read (`specific_tags`): nothing that names a patient is parsed, kept or shown."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "BodyPartExamined"])
    except Exception:  # noqa: BLE001 - read_dicom, which runs first, has already said what is wrong with the file
        return None, None
    return _code(dataset.get("Modality")), _code(dataset.get("BodyPartExamined"))


def _code(value) -> str | None:
    """A DICOM code string as shown in messages: printable, upper case, at most 32 characters, or None."""
    text = "".join(ch for ch in str(value or "") if ch.isprintable()).strip().upper()[:32]
    return text or None


def read_dicom(path: str | Path, channels: int = 1, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return an HxWxC uint8 display image of the first frame; `size` (h, w) resizes."""
    path = Path(path)
    dataset = _open(path)
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        _no_image(dataset, path)
    _check_size(dataset, path)
    pixels = _pixels(dataset, path)
    if pixels.ndim == 4 or (pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) == 1):
        pixels = pixels[0]  # multi-frame: the first frame
    image = _display(dataset, pixels)
    return _conform(image, channels, size)


def read_header(path: str | Path):
    """The header only, pixel data not read (a folder's check before training): a DataError, worded as
    `read_dicom`'s, for a file that is not DICOM, has no image (no Rows/Columns) or is too large to decode.
    Damaged pixel data is found when the image is decoded."""
    path = Path(path)
    dataset = _open(path, stop_before_pixels=True)
    if "Rows" not in dataset or "Columns" not in dataset:
        _no_image(dataset, path)
    _check_size(dataset, path)
    return dataset


def _open(path: Path, **options):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise DataError(f"DICOM file not found: {path}")
    try:
        return pydicom.dcmread(path, **options)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no 'DICM' header); expected a DICOM image") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged headers
        raise DataError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {str(exc)[:160]})") from None


def _no_image(dataset, path: Path):
    kind = dataset.get("Modality") or dataset.get("SOPClassUID", "unknown")
    raise DataError(f"{path}: DICOM without an image (modality/SOP class {kind}); "
                    "expected an image such as an X-ray (CR/DX), CT or MR slice")


def _check_size(dataset, path: Path) -> None:
    """Refuse, from the header, an image whose decoded pixels exceed MAX_PIXELS: a deflated or RLE file of
    a few KB may declare thousands of frames of 6000 x 6000 and cost gigabytes to decode."""
    try:
        rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: DICOM header with unreadable image size") from None
    if rows < 1 or columns < 1:
        raise DataError(f"{path}: DICOM image of {rows} x {columns} pixels")
    if rows * columns * frames * samples > MAX_PIXELS:
        raise DataError(f"{path}: DICOM image too large to decode ({frames} frame(s) of {rows} x {columns} x "
                        f"{samples} samples; at most {MAX_PIXELS:,} pixels)")


def _pixels(dataset, path: Path) -> np.ndarray:
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:  # noqa: BLE001
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        compressed = bool(syntax is not None and getattr(syntax, "is_compressed", False))
        hint = f"; transfer syntax {syntax.name}: {DECODER_HINT}" if compressed and "decod" in str(exc).lower() else ""
        raise DataError(f"{path}: cannot decode DICOM pixel data ({str(exc)[:200]}){hint}") from None


def _display(dataset, pixels: np.ndarray) -> np.ndarray:
    """Stored values -> 0..255 floats (grey HxW or colour HxWx3) as a viewer would show them."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        colour = apply_color_lut(pixels, dataset).astype(np.float64)
        return colour * (255.0 / max(float(colour.max()), 1.0)) if colour.max() > 255 else colour
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB (pydicom already converted YBR to RGB)
        return _stretch(pixels.astype(np.float64))
    values = apply_modality_lut(pixels, dataset)
    if "VOILUTSequence" in dataset or "WindowCenter" in dataset:
        values = apply_voi_lut(values, dataset, index=0)
    grey = _stretch(np.asarray(values, dtype=np.float64))
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return grey


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the image's value range onto 0..255 (after windowing the range is the window)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros_like(values)
    return np.clip((np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low)), 0, 255)


def _conform(image: np.ndarray, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(np.round(image).astype(np.uint8))
    pil = pil.convert("L" if channels == 1 else "RGB")
    if size is not None and (pil.height, pil.width) != tuple(size):
        pil = pil.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(pil, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array
