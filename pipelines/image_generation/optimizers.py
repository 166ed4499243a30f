"""The discriminator's and the generator's optimizers as the model's one `optimizer` (so Keras's JAX trainer and
every weights file carry both)."""
from __future__ import annotations

import keras

from deepsuite.pipelines.image_generation.fid_metric import PACKAGE


@keras.saving.register_keras_serializable(PACKAGE)
class GanOptimizers(keras.optimizers.Optimizer):
    """The discriminator's and the generator's optimizers as the model's one `optimizer`: its variables are theirs
    (discriminator's first), so fit()'s state on JAX and every weights file carry both. `partition` (set by
    `GAN.compile`) splits a model's trainable variables into (discriminator's, generator's)."""

    def __init__(self, discriminator, generator, name: str = "gan_optimizers", **kwargs):
        super().__init__(learning_rate=0.0, name=name)
        self.discriminator = keras.optimizers.get(discriminator)
        self.generator = keras.optimizers.get(generator)
        self.partition = None

    def build(self, var_list):
        d_vars, g_vars = self.partition(var_list)
        self.discriminator.build(d_vars)
        self.generator.build(g_vars)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.discriminator.variables + self.generator.variables

    def slices(self, optimizer_variables):
        """(own, discriminator's, generator's) parts of a list in `variables`' order."""
        own, d = len(self._variables), len(self.discriminator.variables)
        values = list(optimizer_variables)
        return values[:own], values[own:own + d], values[own + d:]

    @property
    def iterations(self):
        return self.generator.iterations

    @property
    def learning_rate(self):
        return self.generator.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):  # the base class sets 0.0 in __init__, before the inner optimizers exist
        if "generator" in self.__dict__:
            self.generator.learning_rate = value

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("GanOptimizers applies through its discriminator and generator optimizers")

    def finalize_variable_values(self, var_list):
        pass

    def get_config(self):
        return {"name": self.name, "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "generator": keras.saving.serialize_keras_object(self.generator)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("discriminator"), custom_objects=custom_objects),
                   keras.saving.deserialize_keras_object(config.pop("generator"), custom_objects=custom_objects),
                   **config)
