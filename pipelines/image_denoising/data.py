"""Clean images for denoising: scikit-image's photographs, Fashion-MNIST or a folder, as float32 0..1.

Images keep their own sizes (a list, not a stacked array): training draws random patches from them
(`patches.NoisyPatches`), evaluation denoises every test image whole.

Default data, offline: the natural photographs that ship inside scikit-image (`skimage/data`, CC0 or
public domain, see scikit-image's data README). `camera`, `coins`, `moon` and `page` are never trained
on: they are the default test set when no `data.test_folder` is given. `camera` is the cameraman,
which is also image 01 of Set12, so holding it out keeps the Set12 benchmark honest.

`load_data` puts lists of clean float images (any sizes) in the splits: `train` feeds the patch stream,
`val` gives fixed noisy patches for early stopping, `test` is denoised whole (its y are the image names).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import array_digest
from deepsuite.common.data.images import IMAGE_SUFFIXES, MAX_PIXELS
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.image_denoising.config import ImageDenoisingConfig
from deepsuite.pipelines.image_denoising.contract import ImageDenoisingMetadata
from deepsuite.pipelines.image_denoising.noise import describe

SKIMAGE_TRAIN = ("astronaut.png", "brick.png", "cell.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png",
                 "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
                 "rocket.jpg")
SKIMAGE_TEST = ("camera.png", "coins.png", "moon.png", "page.png")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L" conversion


def load_data(config: ImageDenoisingConfig) -> Splits:
    from deepsuite.pipelines.image_denoising.patches import usable  # Keras (PyDataset) loads when training

    data = config.data
    train_images, train_names, source = load_training_images(data.source, data.channels, data.cache_dir)
    if data.max_train_images:
        train_images, train_names = train_images[: data.max_train_images], train_names[: data.max_train_images]
    train_images, train_names, dropped = usable(train_images, train_names, data.patch_size)
    keep, held = split_by_image(len(train_images), data.val_fraction, config.seed)
    val_images = [train_images[i] for i in held] or [train_images[i] for i in keep]
    val_names = [train_names[i] for i in held]
    test_images, test_names, test_source = load_test_images(data.test_folder, data.channels)
    if data.max_test_images:
        test_images, test_names = test_images[: data.max_test_images], test_names[: data.max_test_images]
    small = [n for n, im in zip(test_names, test_images) if min(im.shape[:2]) < 7]
    if small:
        raise DataError(f"test images {small} are smaller than 7x7 pixels, too small for SSIM")
    info = DatasetInfo(
        name=Path(data.source.partition(":")[2]).name if data.source.startswith("folder:") else data.source,
        source=f"{source}; test: {test_source}",
        digest=array_digest(*[im for im in train_images], *[im for im in test_images]))
    metadata = ImageDenoisingMetadata(
        channels=data.channels, size_multiple=config.model.size_multiple(), noise=config.noise,
        noise_label=describe(config.noise), train_images=[train_names[i] for i in keep], val_images=val_names,
        skipped_small_images=dropped, test_images=test_names)
    return Splits(Split([train_images[i] for i in keep], None), Split(val_images, None),
                  Split(test_images, test_names), info, metadata)


def patch_stream(splits: Splits, config: ImageDenoisingConfig):
    """The training batches: fresh random noisy/clean patches every epoch (patches.NoisyPatches)."""
    from deepsuite.pipelines.image_denoising.patches import NoisyPatches

    data = config.data
    return NoisyPatches(splits.train.x, data.patch_size, config.train.batch_size, data.patches_per_epoch,
                        config.noise, config.seed, data.augment, data.sampling)


def fit_data(splits: Splits, config: ImageDenoisingConfig) -> FitData:
    from deepsuite.pipelines.image_denoising.patches import fixed_patches, usable

    data = config.data
    val_images, _, _ = usable(splits.val.x, [str(i) for i in range(len(splits.val.x))], data.patch_size)
    validation = fixed_patches(val_images, data.val_patches, data.patch_size, config.noise, config.seed)
    return FitData(patch_stream(splits, config), validation_data=validation)


def input_example(splits: Splits) -> np.ndarray:
    """A crop of the first test image, at most 64 pixels a side and a multiple of what the model takes."""
    multiple = splits.metadata.size_multiple
    image = splits.test.x[0]
    side = max(multiple, min(64, *image.shape[:2]) // multiple * multiple)
    return np.ascontiguousarray(image[None, :side, :side]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Reading images


@dataclass
class DecodedImage:
    """A decoded image: float32 HxWx(1|3) on 0..1, the alpha channel if any, and the file's bit depth."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int


def decode_image(path: str | Path) -> DecodedImage:
    """Read any PIL image at full precision; 16-bit greyscale PNG/TIFF keeps its 65536 levels."""
    return _open(Path(path), decode=True)


def probe_image(path: str | Path) -> None:
    """Check that `path` is a readable, non-empty image of sane size from its header, without decoding it."""
    _open(Path(path), decode=False)


def _open(path: Path, decode: bool):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not an image")
    try:
        with Image.open(path) as image:
            if image.width == 0 or image.height == 0:
                raise DataError(f"{path}: empty image (0 pixels)")
            if image.width * image.height > MAX_PIXELS:
                raise DataError(f"{path}: image too large ({image.width}x{image.height} pixels)")
            if not decode:
                return None
            image.load()
            return _decode(image)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None


def _decode(image) -> DecodedImage:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float32)
        high = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return DecodedImage((values / high)[..., None], None, 16 if high > 255 else 8)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scale = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        return DecodedImage((values / scale)[..., None], None, 32)
    alpha = None
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
    if mode in ("1", "L", "LA"):
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return DecodedImage(grey[..., None], alpha, 8)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return DecodedImage(rgb, alpha, 8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxWx(1|3) float -> HxWx`channels` (luma for grey, replication for RGB)."""
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return (image @ LUMA)[..., None].astype(np.float32)
    return np.repeat(image, 3, axis=-1)


def read_clean(path: Path, channels: int) -> np.ndarray:
    return to_channels(decode_image(path).pixels, channels)


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_folder(folder: Path, channels: int) -> tuple[list[np.ndarray], list[str]]:
    """Every image under `folder`; all unreadable files are reported together, by name."""
    images, names, bad = [], [], []
    for path in image_files(folder):
        try:
            images.append(read_clean(path, channels))
            names.append(str(path.relative_to(folder)))
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DataError(f"{len(bad)} unreadable image(s) in {folder}: " + "; ".join(bad[:5]) + more)
    return images, names


def skimage_folder() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def read_skimage(names: tuple[str, ...], channels: int) -> tuple[list[np.ndarray], list[str]]:
    folder = skimage_folder()
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"scikit-image's sample images {missing} are missing from {folder}; "
                        "reinstall scikit-image (pip install --force-reinstall scikit-image)")
    return [read_clean(folder / n, channels) for n in names], [Path(n).stem for n in names]


def load_training_images(source: str, channels: int, cache_dir: str | None) -> tuple[list[np.ndarray], list[str], str]:
    """(images, names, resolved source) for `data.source`."""
    kind, _, arg = source.partition(":")
    if source == "skimage":
        images, names = read_skimage(SKIMAGE_TRAIN, channels)
        return images, names, f"skimage:{skimage_folder()}"
    if source == "fashion_mnist":
        from deepsuite.common.data import labeled_images

        data = labeled_images.load("fashion_mnist", cache_dir=cache_dir)
        images = [to_channels(x.astype(np.float32) / 255.0, channels) for x in data.train_x]
        return images, [f"fashion_mnist/{i}" for i in range(len(images))], data.source
    if kind == "folder" and arg:
        folder = Path(arg).expanduser()
        images, names = read_folder(folder, channels)
        return images, names, f"folder:{folder}"
    raise DataError(f"unknown data.source {source!r}; use skimage, fashion_mnist or folder:<path>")


def load_test_images(test_folder: str | None, channels: int) -> tuple[list[np.ndarray], list[str], str]:
    if test_folder:
        folder = Path(test_folder).expanduser()
        images, names = read_folder(folder, channels)
        return images, [Path(n).stem for n in names], f"folder:{folder}"
    images, names = read_skimage(SKIMAGE_TEST, channels)
    return images, names, "skimage held-out (" + ", ".join(names) + ")"


def split_by_image(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): whole images held out, at least one when `fraction` > 0 and count >= 2."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(fraction * count))
    if fraction > 0 and count >= 2:
        n_val = min(max(1, n_val), count - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
