"""Image denoising pieces in-process: metrics vs scikit-image, noise models, patches, tiling, file I/O."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import metrics as skm

from deepsuite.common import config as config_lib
from deepsuite.common.errors import ConfigError, DataError, DeepsuiteError
from deepsuite.common.metrics_image import psnr, ssim
from deepsuite.pipelines.image_denoising import config as cfg
from deepsuite.pipelines.image_denoising.data import decode_image, read_folder, read_skimage, split_by_image
from deepsuite.pipelines.image_denoising.evaluation import estimate_sigma
from deepsuite.pipelines.image_denoising.noise import add_noise
from deepsuite.pipelines.image_denoising.patches import NoisyPatches, fixed_patches, usable
from tests.support.cli import SHARED_DATA

SET12 = SHARED_DATA / "set12"


def real_images():
    images, names = read_skimage(("camera.png", "astronaut.png"), channels=1)
    colour, _ = read_skimage(("astronaut.png",), channels=3)
    return images + colour


@pytest.mark.parametrize("index", [0, 1, 2])
def test_psnr_and_ssim_match_scikit_image_on_the_same_arrays(index):
    clean = real_images()[index][:200, :150].astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(index).normal(0, 0.1, clean.shape), 0, 1)
    axis = -1 if clean.shape[-1] == 3 else None
    ref_clean, ref_noisy = (clean, noisy) if axis else (clean[..., 0], noisy[..., 0])
    assert psnr(clean, noisy) == pytest.approx(skm.peak_signal_noise_ratio(ref_clean, ref_noisy, data_range=1), abs=1e-9)
    assert ssim(clean, noisy) == pytest.approx(
        skm.structural_similarity(ref_clean, ref_noisy, data_range=1, channel_axis=axis), abs=1e-9)
    assert psnr(clean, clean) == float("inf") and ssim(clean, clean) == pytest.approx(1.0)


def test_gaussian_noise_has_the_configured_sigma_and_is_not_clipped():
    clean = np.full((4, 64, 64, 1), 0.5, np.float32)
    noise = cfg.NoiseConfig(sigma=25)
    noisy = add_noise(clean, noise, np.random.default_rng(0))
    assert np.std(noisy - clean) * 255 == pytest.approx(25, rel=0.03)
    assert psnr(clean[0], noisy[0]) == pytest.approx(20.17, abs=0.1)         # the textbook noisy PSNR at sigma=25
    edge = add_noise(np.zeros((64, 64, 1), np.float32), noise, np.random.default_rng(0))
    assert edge.min() < 0                                                 # the benchmark protocol: no clipping
    blind = cfg.NoiseConfig(sigma=25, sigma_range=(5, 50))
    per_patch = (add_noise(clean, blind, np.random.default_rng(1), blind=True) - clean).std(axis=(1, 2, 3)) * 255
    assert per_patch.min() >= 4 and per_patch.max() <= 52 and per_patch.std() > 1


def test_poisson_and_salt_pepper_noise():
    clean = np.full((128, 128, 3), 0.4, np.float32)
    poisson = add_noise(clean, cfg.NoiseConfig(kind="poisson", peak=30), np.random.default_rng(0))
    assert poisson.mean() == pytest.approx(0.4, abs=0.01) and poisson.std() == pytest.approx(np.sqrt(0.4 / 30), rel=0.1)
    sp = add_noise(clean, cfg.NoiseConfig(kind="salt_pepper", amount=0.1), np.random.default_rng(0))
    hit = (sp != clean).any(axis=-1)
    assert hit.mean() == pytest.approx(0.1, abs=0.01) and np.allclose(np.unique(sp), [0.0, 0.4, 1.0])


@pytest.mark.parametrize("assignment, key", [("noise.sigma=0", "noise.sigma"), ("noise.sigma=-5", "noise.sigma"),
                                             ("noise.sigma_range=[30, 10]", "noise.sigma_range"),
                                             ("model.kind=vgg", "model.kind")])
def test_bad_noise_and_model_settings_are_config_errors_naming_the_key(assignment, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_lib.resolve(cfg.ImageDenoisingConfig, cfg.PRESETS, "smoke", None, [assignment])


def test_presets_keep_adam_with_decay():
    for preset in cfg.PRESETS:
        train = config_lib.resolve(cfg.ImageDenoisingConfig, cfg.PRESETS, preset).train
        assert train.optimizer == "adam" and train.schedule == "cosine", preset


def test_patches_are_seeded_augmented_and_fresh_each_epoch():
    images = real_images()[:2]
    stream = NoisyPatches(images, 32, 8, 40, cfg.NoiseConfig(), seed=3)
    noisy, clean = stream[0]
    assert len(stream) == 5 and noisy.shape == clean.shape == (8, 32, 32, 1) and noisy.dtype == np.float32
    assert 0 <= clean.min() and clean.max() <= 1 and np.std(noisy - clean) * 255 == pytest.approx(25, rel=0.1)
    again, _ = NoisyPatches(images, 32, 8, 40, cfg.NoiseConfig(), seed=3)[0]
    np.testing.assert_array_equal(noisy, again)
    stream.set_epoch(1)
    assert not np.array_equal(stream[0][1], clean)
    stream.set_epoch(0)
    np.testing.assert_array_equal(stream[0][1], clean)  # (seed, epoch, batch) only: resumable
    val_noisy, val_clean = fixed_patches(images, 6, 32, cfg.NoiseConfig(), seed=3)
    np.testing.assert_array_equal(val_noisy, fixed_patches(images, 6, 32, cfg.NoiseConfig(), seed=3)[0])


def test_image_sampling_draws_each_image_equally_often_instead_of_by_area():
    from deepsuite.pipelines.image_denoising.patches import sample_patches

    big, small = np.zeros((400, 400, 1), np.float32), np.ones((40, 40, 1), np.float32)  # small: 1/400 of the area
    by_area = sample_patches([big, small], 2000, 32, np.random.default_rng(0), augment=False)
    by_image = sample_patches([big, small], 2000, 32, np.random.default_rng(0), augment=False, sampling="image")
    share_area, share_image = by_area.mean(axis=(1, 2, 3)).mean(), by_image.mean(axis=(1, 2, 3)).mean()
    assert share_area < 0.01 and 0.45 < share_image < 0.55
    assert cfg.ImageDenoisingConfig().data.sampling in ("area", "image")


def test_self_ensemble_inverts_each_flip_and_averages_the_eight():
    import keras

    from deepsuite.pipelines.image_denoising.tiling import denoise_any_channels, dihedral

    image = np.random.default_rng(1).random((37, 52, 1)).astype(np.float32)
    assert len({dihedral(image, k).tobytes() for k in range(8)}) == 8
    for k in range(8):
        np.testing.assert_array_equal(dihedral(dihedral(image, k), k, inverse=True), image)
    inputs = keras.Input((None, None, 1))
    pointwise = keras.Model(inputs, keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="ones")(inputs))
    out, tiles = denoise_any_channels(pointwise, image, 1, 32, 8, 1, self_ensemble=True)
    np.testing.assert_allclose(out, image + 1, atol=1e-5)   # equivariant model: the ensemble changes nothing
    single, single_tiles = denoise_any_channels(pointwise, image, 1, 32, 8, 1)
    assert tiles == 8 * single_tiles
    # a model that is not flip-equivariant (a one-sided 2-pixel shift): the ensemble is the mean of the 8 turned back
    shift = keras.Model(inputs, keras.layers.Lambda(lambda x: keras.ops.roll(x, 2, axis=2))(inputs))
    ensemble, _ = denoise_any_channels(shift, image, 1, 64, 0, 1, self_ensemble=True)
    by_hand = np.mean([dihedral(np.roll(dihedral(image, k), 2, axis=1), k, inverse=True) for k in range(8)], axis=0)
    np.testing.assert_allclose(ensemble, by_hand, atol=1e-6)
    assert not np.allclose(ensemble, np.roll(image, 2, axis=1))


def test_images_smaller_than_a_patch_are_skipped_or_refused():
    big, small = np.zeros((50, 60, 1), np.float32), np.zeros((20, 90, 1), np.float32)
    kept, names, dropped = usable([big, small], ["big", "small"], 40)
    assert names == ["big"] and dropped == ["small"] and len(kept) == 1
    with pytest.raises(DataError, match=r"smaller than data\.patch_size=64.*--set data\.patch_size=50"):
        usable([big, small], ["big", "small"], 64)


def test_split_by_image_holds_out_whole_images():
    train, val = split_by_image(13, 0.1, seed=0)
    assert len(val) == 1 and len(train) == 12 and not set(train) & set(val)
    assert split_by_image(1, 0.1, seed=0)[1].size == 0


def test_decode_16_bit_png_keeps_precision_and_bad_files_are_clear(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    decoded = decode_image(tmp_path / "deep.png")
    assert decoded.bit_depth == 16 and decoded.pixels.shape == (64, 64, 1)
    assert len(np.unique(decoded.pixels)) == 64 * 64                     # not squeezed into 256 levels
    np.testing.assert_allclose(decoded.pixels[..., 0], ramp / 65535, atol=1e-6)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="empty file"):
        decode_image(tmp_path / "empty.png")
    with pytest.raises(DataError, match="not an image file"):
        decode_image(tmp_path / "notes.png")
    with pytest.raises(DataError, match=r"2 unreadable image\(s\)"):
        read_folder(tmp_path, 1)


def test_noise_estimate_used_by_the_baseline():
    clean = read_skimage(("camera.png",), 1)[0][0]
    noisy = add_noise(clean, cfg.NoiseConfig(sigma=25), np.random.default_rng(0))
    assert estimate_sigma(noisy) * 255 == pytest.approx(25, rel=0.1)


# ---- tiling with real (tiny) Keras models --------------------------------------------------------------------


def test_tiling_equals_whole_image_for_a_pointwise_model_and_keeps_any_size():
    import keras

    from deepsuite.pipelines.image_denoising.model import build_denoiser
    from deepsuite.pipelines.image_denoising.tiling import denoise_any_channels, denoise_array

    inputs = keras.Input((None, None, 1))
    pointwise = keras.Model(inputs, keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="ones")(inputs))
    image = np.random.default_rng(0).random((97, 130, 1)).astype(np.float32)
    tiled, tiles = denoise_array(pointwise, image, tile=32, overlap=8, multiple=1)
    assert tiles > 12 and tiled.shape == image.shape
    np.testing.assert_allclose(tiled, image + 1, atol=1e-5)
    unet = build_denoiser(1, cfg.ModelConfig(kind="unet", width=4, levels=2, blocks=1))
    out, _ = denoise_array(unet, image, tile=48, overlap=8, multiple=4)      # odd sizes: padded and cropped
    assert out.shape == image.shape
    dncnn_rgb = build_denoiser(3, cfg.ModelConfig(kind="dncnn", depth=3, width=4, downscale=2))
    grey_on_rgb, _ = denoise_any_channels(dncnn_rgb, image, 3, 64, 16, 2)
    rgb_on_grey, _ = denoise_any_channels(pointwise, np.repeat(image, 3, -1), 1, 64, 16, 1)
    assert grey_on_rgb.shape == image.shape and rgb_on_grey.shape == (97, 130, 3)
    tiny, count = denoise_array(unet, image[:3, :5], tile=48, overlap=8, multiple=4)
    assert tiny.shape == (3, 5, 1) and count == 1


@pytest.mark.parametrize("tile, overlap", [(8, 0), (64, 32), (64, -1)])
def test_bad_tiling_options_are_refused(tile, overlap):
    from deepsuite.pipelines.image_denoising.tiling import check_tiling

    with pytest.raises(DeepsuiteError, match="--tile|--overlap"):
        check_tiling(tile, overlap)


def test_output_names_for_one_file_several_files_and_no_output(tmp_path):
    from deepsuite.pipelines.image_denoising.inference import output_paths

    assert output_paths(["a/noisy.jpg"], tmp_path / "clean.png") == [tmp_path / "clean.png"]
    assert output_paths(["a/x.png", "b/y.tif"], tmp_path / "out") == [tmp_path / "out" / "x-denoised.png",
                                                                     tmp_path / "out" / "y-denoised.png"]
    assert output_paths(["a/noisy.jpg"], None) == [Path("a/noisy-denoised.png")]
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="must be a folder"):
        output_paths(["a.png", "b.png"], tmp_path / "file.png")


@pytest.mark.skipif(not SET12.is_dir(), reason="../shared/data/set12 is not available")
def test_set12_reads_as_twelve_grey_images():
    images, names = read_folder(SET12, 1)
    assert len(images) == 12 and {im.shape[:2] for im in images} == {(256, 256), (512, 512)}
