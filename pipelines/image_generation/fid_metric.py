"""`val_fid` inside Keras: the Fréchet distance between two feature streams, accumulated batch by batch."""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "deepsuite_image_generation"  # the registered classes' package (unchanged by the split)


@keras.saving.register_keras_serializable(PACKAGE)
class FrechetDistance(keras.metrics.Metric):
    """The Fréchet distance between two streams of feature vectors (real, generated), accumulated batch by batch:
    sums and sums of outer products, float32; Tr((C_r C_g)^(1/2)) from the eigenvalues of C_r^(1/2) C_g C_r^(1/2)."""

    def __init__(self, dim: int, name: str = "fid", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dim = dim
        zeros = keras.initializers.Zeros()
        self.count = self.add_variable(shape=(), initializer=zeros, name="count")
        self.sums = [self.add_variable(shape=(dim,), initializer=zeros, name=f"sum_{s}") for s in "rg"]
        self.outers = [self.add_variable(shape=(dim, dim), initializer=zeros, name=f"outer_{s}") for s in "rg"]

    def update_state(self, real, generated):
        for features, total, outer in zip((real, generated), self.sums, self.outers):
            features = ops.cast(features, "float32")
            total.assign(total + ops.sum(features, axis=0))
            outer.assign(outer + ops.matmul(ops.transpose(features), features))
        self.count.assign(self.count + ops.cast(ops.shape(real)[0], "float32"))

    def result(self):
        n = ops.maximum(self.count, 2.0)
        means = [total / n for total in self.sums]
        covs = [(outer - n * ops.outer(mean, mean)) / (n - 1.0) for outer, mean in zip(self.outers, means)]
        values, vectors = ops.eigh(covs[0])
        root = ops.matmul(vectors * ops.sqrt(ops.maximum(values, 0.0))[None, :], ops.transpose(vectors))
        inner = ops.eigh(ops.matmul(ops.matmul(root, covs[1]), root))[0]
        trace_root = ops.sum(ops.sqrt(ops.maximum(inner, 0.0)))
        return (ops.sum(ops.square(means[0] - means[1])) + ops.trace(covs[0]) + ops.trace(covs[1])
                - 2.0 * trace_root)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}
