"""The keras-io "WGAN-GP overriding Model.train_step" recipe (A_K_Nain, keras.io/examples/generative/wgan_gp), in
Keras 3 on the TensorFlow backend, trained on our training images: the image-generation bench's peer.

As published (our own code, the recipe's settings):
- generator: z (128-d, N(0, I)) -> Dense 4x4x256 (no bias) - BN - LeakyReLU(0.2) -> [UpSampling 2x - Conv 3x3
  (no bias) - BN - LeakyReLU(0.2)] with 128 then 64 filters -> UpSampling 2x - Conv 3x3 (1 filter, no bias) - BN
  - tanh -> 32x32, cropped by 2 pixels a side to 28x28;
- critic: zero-pad 28x28 -> 32x32 -> Conv 5x5/2 (64, 128, 256, 512) + LeakyReLU(0.2), dropout 0.3 after the
  second and third -> flatten -> dropout 0.2 -> Dense(1);
- Wasserstein losses (critic: mean D(fake) - mean D(real); generator: -mean D(fake)) plus gradient penalty
  10 * mean((||grad D(x_hat)|| - 1)^2) at x_hat = real + alpha (fake - real), alpha drawn from N(0, 1) per image
  as the recipe draws it (the paper draws U(0, 1)); 3 critic steps per generator step, each on fresh latents and
  the same real batch; both Adam(2e-4, beta_1 0.5, beta_2 0.9); batch 512 (`fit` on the images, shuffled).
The recipe trains 20 epochs on all 60,000 training images; here it trains on our train split for a CPU budget
(the CPU seconds our model's training took) and stops at the first step boundary past it.
"""
from __future__ import annotations

import numpy as np
from harness import cpu_seconds  # bench/ is on sys.path when a bench runs

LATENT_DIM, BATCH_SIZE, CRITIC_STEPS, GP_WEIGHT = 128, 512, 3, 10.0


def build_generator(channels: int = 1):
    import keras
    from keras import layers

    z = keras.Input(shape=(LATENT_DIM,), name="z")
    x = layers.Dense(4 * 4 * 256, use_bias=False)(z)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((4, 4, 256))(x)
    for filters in (128, 64):
        x = layers.UpSampling2D((2, 2))(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("tanh")(x)
    x = layers.Cropping2D((2, 2))(x)  # 32x32 -> 28x28
    return keras.Model(z, x, name="wgan_gp_generator")


def build_critic(shape=(28, 28, 1)):
    import keras
    from keras import layers

    images = keras.Input(shape=shape, name="image")
    x = layers.ZeroPadding2D((2, 2))(images)  # 28x28 -> 32x32
    for filters, dropout in ((64, False), (128, True), (256, True), (512, False)):
        x = layers.Conv2D(filters, 5, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
        if dropout:
            x = layers.Dropout(0.3)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(images, layers.Dense(1)(x), name="wgan_gp_critic")


def _wgan_class():
    import keras
    import tensorflow as tf
    from keras import ops

    class WGAN(keras.Model):
        """The recipe's model: `train_step` overridden, two optimizers."""

        def __init__(self, critic, generator, latent_dim=LATENT_DIM, critic_steps=CRITIC_STEPS,
                     gp_weight=GP_WEIGHT, seed=0):
            super().__init__()
            self.critic, self.generator = critic, generator
            self.latent_dim, self.critic_steps, self.gp_weight = latent_dim, critic_steps, gp_weight
            self.seeds = keras.random.SeedGenerator(seed)

        def compile(self, d_optimizer, g_optimizer):
            super().compile()
            self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

        def gradient_penalty(self, batch, real, fake):
            alpha = keras.random.normal((batch, 1, 1, 1), seed=self.seeds)
            interpolated = real + alpha * (fake - real)
            with tf.GradientTape() as tape:
                tape.watch(interpolated)
                scores = self.critic(interpolated, training=True)
            grads = tape.gradient(scores, interpolated)
            norm = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)))
            return ops.mean(ops.square(norm - 1.0))

        def train_step(self, data):
            real = data[0] if isinstance(data, tuple) else data
            batch = ops.shape(real)[0]
            for _ in range(self.critic_steps):
                z = keras.random.normal((batch, self.latent_dim), seed=self.seeds)
                with tf.GradientTape() as tape:
                    fake = self.generator(z, training=True)
                    fake_scores = self.critic(fake, training=True)
                    real_scores = self.critic(real, training=True)
                    d_cost = ops.mean(fake_scores) - ops.mean(real_scores)
                    d_loss = d_cost + self.gp_weight * self.gradient_penalty(batch, real, fake)
                grads = tape.gradient(d_loss, self.critic.trainable_variables)
                self.d_optimizer.apply(grads, self.critic.trainable_variables)
            z = keras.random.normal((batch, self.latent_dim), seed=self.seeds)
            with tf.GradientTape() as tape:
                g_loss = -ops.mean(self.critic(self.generator(z, training=True), training=True))
            grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply(grads, self.generator.trainable_variables)
            return {"d_loss": d_loss, "g_loss": g_loss}

    return WGAN


def train(train_x: np.ndarray, cpu_budget: float, seed: int, max_epochs: int = 20, batch_size: int = BATCH_SIZE):
    """Trains the recipe on `train_x` ([-1, 1], N x 28 x 28 x 1) until `cpu_budget` CPU seconds of this process
    have been spent (checked after every step: it stops at the first step boundary past the budget) or
    `max_epochs` (the recipe's 20) are done. Returns (generator, facts): steps, epochs (fractional), CPU and wall
    seconds, the last losses."""
    import time

    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("the keras-io WGAN-GP recipe's step is written for the TensorFlow backend")
    keras.utils.set_random_seed(seed)
    train_x = np.asarray(train_x, np.float32)
    model = _wgan_class()(build_critic(train_x.shape[1:]), build_generator(train_x.shape[-1]), seed=seed)
    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9),
                  keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9))
    batch_size = min(batch_size, len(train_x))
    steps_per_epoch = -(-len(train_x) // batch_size)
    state = {"steps": 0, "logs": {}}

    class Budget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state["steps"] += 1
            state["logs"] = logs or {}
            if cpu_seconds() - start_cpu >= cpu_budget:
                self.model.stop_training = True

    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    model.fit(train_x, batch_size=batch_size, epochs=max_epochs, shuffle=True, verbose=0, callbacks=[Budget()])
    facts = {"steps": state["steps"], "epochs": state["steps"] / steps_per_epoch,
             "cpu_seconds": cpu_seconds() - start_cpu, "wall_seconds": time.perf_counter() - start_wall,
             "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
             **{k: float(np.asarray(v)) for k, v in state["logs"].items()}}
    return model.generator, facts


def sample(generator, n: int, seed: int, batch: int = 500) -> np.ndarray:
    """n images in [-1, 1] from NumPy-seeded 128-d Gaussian latents (inference-mode BatchNorm, as the recipe's
    monitor samples)."""
    z = np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype(np.float32)
    return np.asarray(generator.predict(z, batch_size=batch, verbose=0), np.float32)
