"""Language models over token ids: a decoder-only transformer (nanoGPT's shape) and a stacked LSTM.

Both take int32 ids (batch, time) and return next-token logits (batch, time, vocab). Only built-in
Keras layers and keras.ops are used, so the saved .keras file loads anywhere (`deepsuite generate`,
`mlflow models serve`) without importing this package, on TensorFlow, JAX or PyTorch.

    gpt:  ids -> token embedding + learned position embedding -> dropout
          -> num_layers x [x + attn(LN(x)), x + MLP(LN(x))]   (pre-norm; causal attention; GELU MLP)
          -> LN -> Dense(vocab)
    lstm: ids -> embedding -> num_layers x LSTM(dim) (dropout between) -> Dense(vocab)

Layer names are part of the contract with `decoding.py`, which reuses these layers for cached decoding.
`build_model` compiles one for training: AdamW without decay on biases and norms, beta2 0.99, perplexity.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import optimizer
from deepsuite.pipelines.text_generation.config import ModelConfig, TextGenerationConfig
from deepsuite.pipelines.text_generation.metrics import Perplexity


def build_model(config: TextGenerationConfig, splits: Splits) -> keras.Model:
    model = build_language_model(splits.metadata.vocab_size, config.model)
    opt = optimizer(config.train, config.data.steps_per_epoch)
    if config.train.optimizer == "adamw":
        opt.exclude_from_weight_decay(var_names=no_decay_names())
    if hasattr(opt, "beta_2"):
        opt.beta_2 = 0.99  # nanoGPT's choice for small batches: second moments that follow the loss sooner
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[Perplexity()], jit_compile=_xla(config.model.xla and not config.deterministic))
    return model


def _xla(wanted: bool):
    """XLA for training: JAX always compiles; TensorFlow only on GPUs unless asked, and never together with
    its op determinism (Keras would refuse with a warning); torch keeps Keras' default."""
    return True if wanted and keras.backend.backend() == "tensorflow" else "auto"


def build_language_model(vocab_size: int, config: ModelConfig) -> keras.Model:
    if config.kind == "lstm":
        return build_lstm(vocab_size, config)
    return build_gpt(vocab_size, config)


def build_gpt(vocab_size: int, config: ModelConfig) -> keras.Model:
    dim, heads, context = config.dim, config.num_heads, config.context
    init = keras.initializers.RandomNormal(stddev=0.02)
    # Residual projections scaled down with depth, as GPT-2 does, so the residual stream starts small.
    proj_init = keras.initializers.RandomNormal(stddev=0.02 / (2 * config.num_layers) ** 0.5)

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")                     # (B, T)
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1                                  # 0..T-1 per row
    x = layers.Embedding(vocab_size, dim, embeddings_initializer=init, name="token_embedding")(ids)
    x = x + layers.Embedding(context, dim, embeddings_initializer=init, name="position_embedding")(positions)
    x = layers.Dropout(config.dropout, name="embedding_dropout")(x)                        # (B, T, D)
    for i in range(config.num_layers):
        h = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln1")(x)
        qkv = layers.Dense(3 * dim, kernel_initializer=init, name=f"block{i}_qkv")(h)      # (B, T, 3D)
        qkv = layers.Reshape((-1, 3, heads, dim // heads), name=f"block{i}_heads")(qkv)   # (B, T, 3, H, D/H)
        attended = ops.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], is_causal=True)
        attended = layers.Reshape((-1, dim), name=f"block{i}_merge")(attended)            # (B, T, D)
        attended = layers.Dense(dim, kernel_initializer=proj_init, name=f"block{i}_proj")(attended)
        x = x + layers.Dropout(config.dropout, name=f"block{i}_attn_dropout")(attended)
        h = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln2")(x)
        h = layers.Dense(config.mlp_ratio * dim, activation="gelu", kernel_initializer=init, name=f"block{i}_fc")(h)
        h = layers.Dense(dim, kernel_initializer=proj_init, name=f"block{i}_out")(h)
        x = x + layers.Dropout(config.dropout, name=f"block{i}_mlp_dropout")(h)
    x = layers.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    logits = layers.Dense(vocab_size, kernel_initializer=init, dtype="float32", name="logits")(x)
    return keras.Model(ids, logits, name="gpt")


def build_lstm(vocab_size: int, config: ModelConfig) -> keras.Model:
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, config.dim, name="token_embedding")(ids)
    for i in range(config.num_layers):
        x = layers.LSTM(config.dim, return_sequences=True, name=f"lstm{i}")(x)
        x = layers.Dropout(config.dropout, name=f"lstm{i}_dropout")(x)
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(ids, logits, name="lstm")


def no_decay_names() -> list[str]:
    """Variables AdamW leaves undecayed (nanoGPT decays only matrices): biases and LayerNorm scales."""
    return ["bias", "gamma", "beta"]
