"""Full-image evaluation: our denoiser beside the noisy input and a classical baseline, by the same code.

Protocol (as in the DnCNN/BM3D papers, so the Set12 numbers compare): each clean test image gets noise
from a generator seeded by (run seed, image index); the noisy input is not clipped and its PSNR is the
true noise level (20.17 dB for sigma=25); every denoiser's output is clipped to 0..1 before PSNR/SSIM.
The baseline is scikit-image's non-local means with its own noise estimate (`estimate_sigma`), so it is
blind to the true sigma, like a user's classical tool would be.

With `evaluation.self_ensemble` (the default) our output is the mean of the model's outputs on the 8
flips/rotations of the noisy image, each turned back (the "+" / geometric self-ensemble of Timofte et al.
2016 and Lim et al. 2017): 8x the test time, no training cost; it was chosen on the validation photographs
(astronaut, page), +0.19..0.22 dB there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from deepsuite.common import reports
from deepsuite.common.metrics_image import psnr, ssim
from deepsuite.common.pipeline import Evaluation, Splits
from deepsuite.pipelines.image_denoising.config import ImageDenoisingConfig, NoiseConfig
from deepsuite.pipelines.image_denoising.noise import add_noise, describe
from deepsuite.pipelines.image_denoising.tiling import denoise_any_channels

TEST_NOISE_STREAM = 104729  # keeps test noise independent of training/validation noise


@dataclass
class ImageResult:
    name: str
    shape: tuple[int, ...]
    scores: dict[str, float]                    # e.g. noisy_psnr, psnr, nl_means_psnr
    images: dict[str, np.ndarray] = field(default_factory=dict)  # noisy / denoised / baseline / clean


def evaluate(model, splits: Splits, config: ImageDenoisingConfig) -> Evaluation:
    settings = config.evaluation
    results = evaluate_images(model, splits.test.x, splits.test.y, config.noise, config.seed, config.data.channels,
                              settings.tile, settings.overlap, config.model.size_multiple(), settings.baseline,
                              settings.figure_images, settings.self_ensemble)
    metrics = mean_metrics(results)
    label = describe(config.noise)
    figures = {}
    if settings.figure_images:
        figures["denoising_examples"] = comparison_figure(
            results, f"{config.model.kind}, {label}: noisy / ours / classical / clean")
    meta = splits.metadata
    notes = [f"test: {len(results)} images ({', '.join(splits.test.y)}) with {label}; "
             f"mean PSNR {metrics['psnr']:.2f} dB (noisy {metrics['noisy_psnr']:.2f} dB"
             + (f", non-local means {metrics['nl_means_psnr']:.2f} dB)" if "nl_means_psnr" in metrics else ")"),
             "protocol: noise not clipped (noisy PSNR is the true noise level); outputs clipped to 0..1"
             + ("; ours averaged over the 8 flips/rotations of each image (self-ensemble)" if settings.self_ensemble
                else ""),
             f"trained on {len(splits.train.x)} images: {', '.join(meta.train_images[:20])}"
             + (" ..." if len(meta.train_images) > 20 else "")]
    if meta.skipped_small_images:
        notes.append(f"skipped {len(meta.skipped_small_images)} training images smaller than the patch")
    return Evaluation(metrics, figures, {"per_image.csv": per_image_csv(results)}, notes)


def test_noise(clean: np.ndarray, noise: NoiseConfig, seed: int, index: int) -> np.ndarray:
    return add_noise(clean, noise, np.random.default_rng([seed, TEST_NOISE_STREAM, index]), blind=False)


def estimate_sigma(noisy: np.ndarray) -> float:
    """Noise std from the finest diagonal wavelet band: median(|HH|) / 0.6745 (Donoho & Johnstone 1994).

    The same estimator as `skimage.restoration.estimate_sigma`, with a Haar wavelet so it needs no
    PyWavelets; averaged over channels.
    """
    h, w = (noisy.shape[0] // 2) * 2, (noisy.shape[1] // 2) * 2
    x = noisy[:h, :w].astype(np.float64)
    diagonal = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2
    return float(np.mean([np.median(np.abs(diagonal[..., c])) / 0.6745 for c in range(x.shape[-1])]))


def nl_means(noisy: np.ndarray) -> np.ndarray:
    """scikit-image non-local means with the settings of its gallery example and an estimated sigma."""
    from skimage.restoration import denoise_nl_means

    sigma = estimate_sigma(noisy)
    out = denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
                           channel_axis=-1)
    return np.asarray(out, np.float32).reshape(noisy.shape)


def score(prefix: str, clean: np.ndarray, image: np.ndarray) -> dict[str, float]:
    return {f"{prefix}psnr": psnr(clean, image), f"{prefix}ssim": ssim(clean, image)}


def evaluate_images(model, images: list[np.ndarray], names: list[str], noise: NoiseConfig, seed: int,
                    channels: int, tile: int, overlap: int, multiple: int, baseline: str,
                    keep_images: int, self_ensemble: bool = False) -> list[ImageResult]:
    results = []
    for index, (clean, name) in enumerate(zip(images, names)):
        noisy = test_noise(clean, noise, seed, index)
        started = time.perf_counter()
        denoised, _ = denoise_any_channels(model, noisy, channels, tile, overlap, multiple, self_ensemble)
        seconds = time.perf_counter() - started
        denoised = np.clip(denoised, 0, 1)
        scores = {**score("noisy_", clean, noisy), **score("", clean, denoised), "seconds": seconds}
        kept = {"noisy": noisy, "denoised": denoised, "clean": clean}
        if baseline == "nl_means":
            classical = np.clip(nl_means(noisy), 0, 1)
            scores.update(score("nl_means_", clean, classical))
            kept["nl_means"] = classical
        results.append(ImageResult(name, clean.shape, scores, kept if index < keep_images else {}))
    return results


def mean_metrics(results: list[ImageResult]) -> dict[str, float]:
    keys = [k for k in results[0].scores if k != "seconds"]
    metrics = {k: float(np.mean([r.scores[k] for r in results])) for k in keys}
    metrics["psnr_gain"] = metrics["psnr"] - metrics["noisy_psnr"]
    if "nl_means_psnr" in metrics:
        metrics["psnr_over_nl_means"] = metrics["psnr"] - metrics["nl_means_psnr"]
    pixels = sum(int(np.prod(r.shape[:2])) for r in results)
    metrics["seconds_per_megapixel"] = sum(r.scores["seconds"] for r in results) / (pixels / 1e6)
    return metrics


def per_image_csv(results: list[ImageResult]) -> str:
    keys = list(results[0].scores)
    lines = ["image,height,width," + ",".join(keys)]
    for r in results:
        lines.append(f"\"{r.name}\",{r.shape[0]},{r.shape[1]}," + ",".join(f"{r.scores[k]:.4f}" for k in keys))
    means = {k: np.mean([r.scores[k] for r in results]) for k in keys}
    lines.append("mean,,," + ",".join(f"{means[k]:.4f}" for k in keys))
    return "\n".join(lines) + "\n"


def comparison_figure(results: list[ImageResult], title: str):
    """One row per test image: noisy | ours | baseline | clean, PSNR in each caption."""
    plt = reports.pyplot()
    shown = [r for r in results if r.images]
    columns = [c for c in ("noisy", "denoised", "nl_means", "clean") if shown and c in shown[0].images]
    fig, axes = plt.subplots(len(shown), len(columns), figsize=(3.2 * len(columns), 3.4 * len(shown)),
                             squeeze=False)
    labels = {"noisy": "noisy", "denoised": "ours", "nl_means": "non-local means", "clean": "clean"}
    prefix = {"noisy": "noisy_", "denoised": "", "nl_means": "nl_means_"}
    for row, result in zip(axes, shown):
        for ax, column in zip(row, columns):
            image = np.clip(result.images[column], 0, 1)
            grey = image.shape[-1] == 1
            ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=1)
            caption = f"{result.name}: {labels[column]}"
            if column in prefix:
                caption += f"\n{result.scores[prefix[column] + 'psnr']:.2f} dB"
            ax.set_title(caption, fontsize=9)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
