"""A CNN for small grey medical images that takes raw uint8 pixels; preprocessing lives in the model.

    uint8 (H, W, C) -> Rescaling to 0..1 -> [Resizing to input_size]         = "preprocessed"
    -> [training only: horizontal flip, shift, rotation, zoom, contrast, brightness]   (never vertical flips:
       an upside-down chest X-ray is not a chest X-ray)
    -> classifier: stages of (Conv-BN-ReLU) x blocks, max-pool between; the last ReLU is "last_conv"
       -> global average pool -> Dropout -> Dense "logits" -> Softmax "probabilities"
    [tta_flip: the classifier also sees the mirrored image and the two probabilities are averaged; with
     tta_train_mirror off (default) only at inference, in the "tta" layer that wraps the classifier, so
     training costs one pass, not two]

The classifier is a nested Functional model so Grad-CAM can reach its last feature map and logits
(see gradcam.py) whatever the backend.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from pipelines.medical_imaging.config import MedicalModel

CLASSIFIER = "classifier"
PREPROCESSED = "preprocessed"
LAST_CONV = "last_conv"
LOGITS = "logits"
TTA = "tta"


def classifier_of(model: keras.Model) -> keras.Model:
    """The nested classifier: a layer of the model, or wrapped by the inference-time mirror average."""
    try:
        return model.get_layer(CLASSIFIER)
    except ValueError:
        return model.get_layer(TTA).classifier


def build_model(input_shape: tuple[int, int, int], num_classes: int, config: MedicalModel) -> keras.Model:
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if config.input_size and tuple(config.input_size) != tuple(input_shape[:2]):
        x = layers.Resizing(*config.input_size, interpolation="bilinear", name="resize")(x)
    x = layers.Identity(name=PREPROCESSED)(x)
    if config.augment:
        x = _augment(x, config)
    classifier = build_classifier(tuple(x.shape[1:]), num_classes, config)
    if config.tta_flip and not config.tta_train_mirror:
        outputs = MirrorAverage(classifier, name=TTA)(x)
    elif config.tta_flip:
        mirrored = HorizontalMirror(name="mirror")(x)
        outputs = layers.Average(name="tta_average")([classifier(x), classifier(mirrored)])
    else:
        outputs = classifier(x)
    outputs = layers.Identity(name="probabilities", dtype="float32")(outputs)
    return keras.Model(inputs, outputs, name="medical_cnn")


@keras.saving.register_keras_serializable(package="deepsuite")
class HorizontalMirror(layers.Layer):
    """Left-right mirror for test-time augmentation; a named layer (not a Lambda) so saved models load
    without Keras's unsafe-deserialisation switch."""

    def call(self, images):
        return ops.flip(images, axis=2)


@keras.saving.register_keras_serializable(package="deepsuite")
class MirrorAverage(layers.Layer):
    """Flip test-time augmentation that costs nothing in training: the classifier's output when
    training, the mean of its outputs on the image and on its left-right mirror at inference."""

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def build(self, input_shape):
        if not self.classifier.built:
            self.classifier.build(input_shape)
        self.built = True

    def call(self, images, training=None):
        probs = self.classifier(images, training=training)
        if training:
            return probs
        return (probs + self.classifier(ops.flip(images, axis=2), training=False)) * 0.5

    def compute_output_shape(self, input_shape):
        return self.classifier.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "classifier": keras.saving.serialize_keras_object(self.classifier)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


def _augment(x, config: MedicalModel):
    """Random transforms that a chest X-ray survives: small shifts, turns, zooms and exposure changes."""
    if config.horizontal_flip:
        x = layers.RandomFlip("horizontal", name="random_flip")(x)
    if config.translate > 0:
        x = layers.RandomTranslation(config.translate, config.translate, fill_mode="nearest", name="random_shift")(x)
    if config.rotation_degrees > 0:
        x = layers.RandomRotation(config.rotation_degrees / 360.0, fill_mode="nearest", name="random_rotation")(x)
    if config.zoom > 0:
        x = layers.RandomZoom(config.zoom, fill_mode="nearest", name="random_zoom")(x)
    if config.contrast > 0:
        x = layers.RandomContrast(config.contrast, value_range=(0, 1), name="random_contrast")(x)
    if config.brightness > 0:
        x = layers.RandomBrightness(config.brightness, value_range=(0, 1), name="random_brightness")(x)
    return x


def build_classifier(input_shape: tuple[int, int, int], num_classes: int, config: MedicalModel) -> keras.Model:
    """Preprocessed float image -> class probabilities; its last ReLU is the Grad-CAM feature map."""
    inputs = keras.Input(shape=input_shape, name="preprocessed_image")
    x = inputs
    stages = len(config.widths)
    for stage, width in enumerate(config.widths):
        for block in range(config.blocks_per_stage):
            last = stage == stages - 1 and block == config.blocks_per_stage - 1
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{stage}_{block}")(x)
            x = layers.BatchNormalization(momentum=config.bn_momentum, name=f"bn{stage}_{block}")(x)
            x = layers.ReLU(name=LAST_CONV if last else f"relu{stage}_{block}")(x)
        if stage < stages - 1 and min(x.shape[1], x.shape[2]) >= 4:
            x = layers.MaxPooling2D(name=f"pool{stage}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name=LOGITS)(x)
    outputs = layers.Softmax(name="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=CLASSIFIER)
