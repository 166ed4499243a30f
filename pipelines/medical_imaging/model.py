"""A CNN for small grey medical images that takes raw uint8 pixels; preprocessing lives in the model.

    uint8 (H, W, C) -> Rescaling to 0..1 -> [Resizing to input_size, or up to min_input_side] = "preprocessed"
    -> [training only: horizontal flip, shift, rotation, zoom, contrast, brightness]   (never vertical flips:
       an upside-down chest X-ray is not a chest X-ray)
    -> classifier: stages of (Conv-BN-ReLU) x blocks, max-pool between; the last ReLU is "last_conv"
       -> global average pool -> Dropout -> Dense "logits" -> Softmax "probabilities"
    [tta_flip: the classifier also sees the mirrored image and the two probabilities are averaged; with
     tta_train_mirror off (default) only at inference, in the "tta" layer that wraps the classifier, so
     training costs one pass, not two]
    [ensemble_members = M > 1: M classifiers "classifier_0".."classifier_{M-1}", each with its own random
     initialisation and its own augmentation draws, inside one "ensemble" layer. Training: the layer
     returns the M members' probabilities side by side (batch x M*K) and `EnsembleCrossentropy` takes the
     mean of the members' own losses, so each member learns as if trained alone (not through the average,
     which would couple them). Inference: the mean of the members' probabilities (and of their mirrored
     predictions with tta_flip), batch x K as usual.]

The classifier is a nested Functional model so Grad-CAM can reach its last feature map and logits
(see gradcam.py) whatever the backend. `build_model` compiles `build_cnn`'s network with the run's
optimizer (deepsuite.common.training, weight EMA included) and loss.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import jit_on_jax, optimizer, steps_per_epoch
from deepsuite.pipelines.medical_imaging.config import MedicalImagingConfig, ModelConfig

CLASSIFIER = "classifier"
PREPROCESSED = "preprocessed"
LAST_CONV = "last_conv"
LOGITS = "logits"
TTA = "tta"
ENSEMBLE = "ensemble"


def classifier_of(model: keras.Model) -> keras.Model:
    """The nested classifier: a layer of the model, or wrapped by the inference-time mirror average;
    for an ensemble, its first member."""
    return classifiers_of(model)[0]


def classifiers_of(model: keras.Model) -> list[keras.Model]:
    """Every nested classifier: the one classifier, or the members of an ensemble."""
    names = {layer.name for layer in model.layers}
    if ENSEMBLE in names:
        return list(model.get_layer(ENSEMBLE).members)
    if TTA in names:
        return [model.get_layer(TTA).classifier]
    return [model.get_layer(CLASSIFIER)]


def model_input_size(stored: tuple[int, int], config: ModelConfig) -> tuple[int, int]:
    """The (h, w) the classifier sees: input_size when set; else stored images enlarged so their shorter
    side reaches min_input_side when set (28 px MedMNIST -> 40 px with 40), larger ones unchanged."""
    if config.input_size:
        return tuple(config.input_size)
    short = min(stored)
    if not config.min_input_side or short >= config.min_input_side:
        return tuple(stored)
    return tuple(round(side * config.min_input_side / short) for side in stored)


def build_model(config: MedicalImagingConfig, splits: Splits) -> keras.Model:
    """The network for the training images' shape and classes, compiled on one-hot targets (data.fit_data)."""
    model = jit_on_jax(build_cnn(tuple(splits.train.x.shape[1:]), len(splits.metadata.class_names), config.model))
    if config.model.ensemble_members > 1:
        # the training output holds every member's probabilities: each member is scored on its own
        loss = EnsembleCrossentropy(label_smoothing=config.model.label_smoothing)
        metrics = [keras.metrics.MeanMetricWrapper(ensemble_accuracy, name="accuracy")]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.model.label_smoothing)
        metrics = ["accuracy"]
    steps = steps_per_epoch(len(splits.train), config.train.batch_size)
    model.compile(optimizer=optimizer(config.train, steps), loss=loss, metrics=metrics)
    return model


def build_cnn(input_shape: tuple[int, int, int], num_classes: int, config: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    size = model_input_size(tuple(input_shape[:2]), config)
    if size != tuple(input_shape[:2]):
        x = layers.Resizing(*size, interpolation="bilinear", name="resize")(x)
    x = layers.Identity(name=PREPROCESSED)(x)
    if config.ensemble_members > 1:
        # each member sees its own augmentation draws (and starts from its own random weights)
        views = [_augment(x, config, suffix=f"_{i}") if config.augment else x for i in range(config.ensemble_members)]
        members = [build_classifier(tuple(x.shape[1:]), num_classes, config, name=f"{CLASSIFIER}_{i}")
                   for i in range(config.ensemble_members)]
        outputs = EnsembleAverage(members, tta_flip=config.tta_flip, name=ENSEMBLE)(views)
        outputs = layers.Identity(name="probabilities", dtype="float32")(outputs)
        return keras.Model(inputs, outputs, name="medical_cnn")
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


@keras.saving.register_keras_serializable(package="deepsuite")
class EnsembleAverage(layers.Layer):
    """M member classifiers, one input view each (their own augmentation draws in training; the same
    preprocessed image at inference). Training: the members' probabilities side by side, batch x M*K,
    for `EnsembleCrossentropy`; inference: their mean (with tta_flip, also over the mirrored image)."""

    def __init__(self, members: list[keras.Model], tta_flip: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)
        self.tta_flip = tta_flip

    def build(self, input_shape):
        for member, shape in zip(self.members, input_shape):
            if not member.built:
                member.build(shape)
        self.built = True

    def call(self, views, training=None):
        if training:
            return ops.concatenate([m(v, training=True) for m, v in zip(self.members, views)], axis=-1)
        probs = [m(v, training=False) for m, v in zip(self.members, views)]
        if self.tta_flip:
            probs += [m(ops.flip(v, axis=2), training=False) for m, v in zip(self.members, views)]
        return ops.mean(ops.stack(probs, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        return self.members[0].compute_output_shape(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "tta_flip": self.tta_flip,
                "members": [keras.saving.serialize_keras_object(m) for m in self.members]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)


def _member_mean(y_true, y_pred):
    """The ensemble's probabilities from the training output (batch x M*K -> batch x K); unchanged when
    y_pred already has K columns (inference, validation, single models)."""
    k, width = y_true.shape[-1], y_pred.shape[-1]
    if k is None or width is None or width == k:
        return y_pred, [y_pred]
    parts = ops.split(y_pred, width // k, axis=-1)
    return ops.mean(ops.stack(parts, axis=0), axis=0), parts


@keras.saving.register_keras_serializable(package="deepsuite")
class EnsembleCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy for `EnsembleAverage`: in training, the mean of the members' own
    losses (each member trained as if alone); on K-column outputs (validation), the usual loss."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "ensemble_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        _, parts = _member_mean(y_true, y_pred)
        losses = [keras.losses.categorical_crossentropy(y_true, p, label_smoothing=self.label_smoothing)
                  for p in parts]
        return losses[0] if len(losses) == 1 else ops.mean(ops.stack(losses, axis=0), axis=0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="deepsuite")
def ensemble_accuracy(y_true, y_pred):
    """Categorical accuracy of the members' mean (training) or of the K-column output as it is."""
    mean, _ = _member_mean(y_true, y_pred)
    return keras.metrics.categorical_accuracy(y_true, mean)


def _augment(x, config: ModelConfig, suffix: str = ""):
    """Random transforms that a chest X-ray survives: small shifts, turns, zooms and exposure changes."""
    if config.horizontal_flip:
        x = layers.RandomFlip("horizontal", name=f"random_flip{suffix}")(x)
    if config.translate > 0:
        x = layers.RandomTranslation(config.translate, config.translate, fill_mode="nearest",
                                     name=f"random_shift{suffix}")(x)
    if config.rotation_degrees > 0:
        x = layers.RandomRotation(config.rotation_degrees / 360.0, fill_mode="nearest",
                                  name=f"random_rotation{suffix}")(x)
    if config.zoom > 0:
        x = layers.RandomZoom(config.zoom, fill_mode="nearest", name=f"random_zoom{suffix}")(x)
    if config.contrast > 0:
        x = layers.RandomContrast(config.contrast, value_range=(0, 1), name=f"random_contrast{suffix}")(x)
    if config.brightness > 0:
        x = layers.RandomBrightness(config.brightness, value_range=(0, 1), name=f"random_brightness{suffix}")(x)
    return x


def build_classifier(input_shape: tuple[int, int, int], num_classes: int, config: ModelConfig,
                     name: str = CLASSIFIER) -> keras.Model:
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
    return keras.Model(inputs, outputs, name=name)
