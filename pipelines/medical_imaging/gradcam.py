"""Grad-CAM (Selvaraju et al., 2017) for the medical CNN, on TensorFlow, JAX or PyTorch.

The model is cut at its last feature map: `features` maps the raw image to that map and `head` maps
the map to class logits. Grad-CAM weighs each channel by the mean gradient of the class logit and
keeps the positive part; the one backend-specific step, the gradient of `head`, sits in `_gradient`.
"""
from __future__ import annotations

import numpy as np

from deepsuite.pipelines.medical_imaging.model import LAST_CONV, LOGITS, PREPROCESSED, classifiers_of


class GradCam:
    """Grad-CAM of the model's classifier; for an ensemble, the mean of its members' maps (each scaled to
    a peak of 1 first, so every member has the same say), then scaled to a peak of 1 again."""

    def __init__(self, model):
        import keras

        preprocess = keras.Model(model.input, model.get_layer(PREPROCESSED).output)
        self.parts = [_cut(classifier, preprocess) for classifier in classifiers_of(model)]
        self.features, self.head = self.parts[0]  # the (first) classifier's two halves

    def __call__(self, images: np.ndarray, class_index: np.ndarray | int) -> np.ndarray:
        """Heatmaps in 0..1, one per image, at the feature-map resolution (N x h x w)."""
        cams = np.mean([_cam(features, head, images, class_index) for features, head in self.parts], axis=0)
        return _unit_peak(cams)


def _cut(classifier, preprocess):
    """(raw image -> last feature map, feature map -> logits) for one classifier."""
    import keras

    conv = classifier.get_layer(LAST_CONV).output
    inner_features = keras.Model(classifier.input, conv)
    features = lambda images: inner_features(preprocess(images, training=False), training=False)  # noqa: E731
    # the head re-applies the classifier's own layers after the last conv to a fresh input
    head_in = keras.Input(shape=tuple(conv.shape[1:]))
    x = head_in
    after = False
    for layer in classifier.layers:
        if after:
            x = layer(x)
            if layer.name == LOGITS:
                break
        after = after or layer.name == LAST_CONV
    return features, keras.Model(head_in, x)


def _cam(features, head, images: np.ndarray, class_index: np.ndarray | int) -> np.ndarray:
    import keras

    feature_maps = keras.ops.convert_to_numpy(features(images)).astype("float32")
    classes = np.broadcast_to(np.asarray(class_index), (len(images),))
    selector = np.eye(int(head.output.shape[-1]), dtype="float32")[classes]
    grads = _gradient(lambda maps: keras.ops.sum(head(maps, training=False) * selector), feature_maps)
    weights = grads.mean(axis=(1, 2), keepdims=True)                # N x 1 x 1 x C
    return _unit_peak(np.maximum((weights * feature_maps).sum(axis=-1), 0.0))  # N x h x w


def _unit_peak(cams: np.ndarray) -> np.ndarray:
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cams / np.maximum(peak, 1e-12), 0.0)


def _gradient(scalar_fn, value: np.ndarray) -> np.ndarray:
    """d scalar_fn / d value, with the active Keras backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(value)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            out = scalar_fn(tensor)
        return tape.gradient(out, tensor).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(scalar_fn)(value))
    if backend == "torch":
        import torch

        tensor = torch.tensor(value, requires_grad=True)
        scalar_fn(tensor).backward()
        return tensor.grad.detach().cpu().numpy()
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} backend")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, size: int | None = None) -> np.ndarray:
    """The heatmap (upsampled, 'jet' colours) blended over the image: an H x W x 3 uint8 picture."""
    from matplotlib import colormaps
    from PIL import Image

    base = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    pil = Image.fromarray(base.astype(np.uint8)).convert("RGB")
    if size:
        pil = pil.resize((size, round(size * pil.height / pil.width)), Image.BICUBIC)
    heat = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize(pil.size, Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255
    return np.uint8(np.clip((1 - alpha) * np.asarray(pil, np.float32) + alpha * colours, 0, 255))
