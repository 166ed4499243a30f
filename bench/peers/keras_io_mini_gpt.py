"""The keras-io "Text generation with a miniature GPT" recipe (Apoorv Nandan,
keras.io/examples/generative/text_generation_with_miniature_gpt), run on our token ids: the text-generation
bench's peer.

As published (keras-io examples/generative/text_generation_with_miniature_gpt.py): a token embedding plus a
learned position embedding (width 256), ONE transformer block - `MultiHeadAttention(num_heads=2, key_dim=256)`
with a causal mask, dropout 0.1, residual and LayerNorm(eps 1e-6) after the attention (post-norm), a
feed-forward Dense(256, relu) - Dense(256), dropout 0.1, residual and LayerNorm(eps 1e-6) - then Dense(vocab)
logits; Adam at Keras' defaults (learning rate 1e-3), sparse categorical cross-entropy from logits, batch 128.

Adapted to our data and budget (the recipe itself is word-level on IMDB, 20k words, 80-token windows, 25 epochs):
- character level on the same token ids as our run (vocabulary `splits.metadata.vocab_size`), windows of our
  `model.context` (its position table has that many rows);
- trained at the same token budget as our run: ceil(our training tokens / context) windows drawn at uniformly
  random offsets of the train ids (NumPy generator seeded with our seed), in steps of the recipe's 128 windows
  (the last step holds the rest), one pass, constant learning rate (the recipe has no schedule);
- scored with our metric: exact mean cross-entropy in nats/char over every non-overlapping window of the text
  our figure was computed on (the caller passes the same windows, `SequentialWindows`), in float64;
- XLA as our run compiles it (`jit_compile`), so the time ratio compares models, not compilers;
- the recipe's second model output (the block's embeddings, no loss) and its sampling callback are left out.
Seconds are the training time only (model building and scoring excluded).
"""
from __future__ import annotations

import math
import time

import keras
import numpy as np
from keras import layers, ops

EMBED_DIM, NUM_HEADS, FEED_FORWARD_DIM, DROPOUT, BATCH = 256, 2, 256, 0.1, 128


def build_mini_gpt(vocab_size: int, context: int):
    ids = keras.Input(shape=(context,), dtype="int32")
    positions = ops.zeros_like(ids) + ops.arange(context, dtype="int32")
    x = layers.Embedding(vocab_size, EMBED_DIM)(ids) + layers.Embedding(context, EMBED_DIM)(positions)
    attention = layers.MultiHeadAttention(NUM_HEADS, EMBED_DIM)(x, x, use_causal_mask=True)
    x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(DROPOUT)(attention))
    hidden = layers.Dense(FEED_FORWARD_DIM, activation="relu")(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(DROPOUT)(layers.Dense(EMBED_DIM)(hidden)))
    return keras.Model(ids, layers.Dense(vocab_size)(x), name="keras_io_mini_gpt")


def mini_gpt_loss(train_ids: np.ndarray, eval_windows, vocab_size: int, context: int, train_tokens: int,
                  seed: int, jit_compile="auto") -> tuple[float, float, int]:
    """(mean nats/char over `eval_windows`, training seconds, training steps). `eval_windows` is indexable,
    batch i = (x, y) int arrays (B, context), e.g. the pipeline's SequentialWindows."""
    keras.utils.set_random_seed(seed)
    model = build_mini_gpt(vocab_size, context)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    batches = RandomBatches(np.asarray(train_ids), context, max(1, math.ceil(train_tokens / context)), seed)
    started = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    seconds = time.perf_counter() - started

    nats, tokens = 0.0, 0
    for i in range(len(eval_windows)):
        x, y = eval_windows[i]
        logits = np.asarray(model.predict_on_batch(np.asarray(x, np.int32)), dtype=np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, np.asarray(y, np.int64)[..., None], axis=-1)[..., 0]
        nats += float((np.log(np.exp(shifted).sum(axis=-1)) - picked).sum())
        tokens += int(np.size(y))
    return nats / tokens, seconds, len(batches)


class RandomBatches(keras.utils.PyDataset):
    """`count` windows (ids[o:o+T], ids[o+1:o+T+1]) at random offsets o, all drawn up front from `seed`, in
    batches of 128 (the last one holds what is left)."""

    def __init__(self, ids: np.ndarray, context: int, count: int, seed: int):
        super().__init__()
        self.ids, self.span = ids, np.arange(context + 1)
        self.starts = np.random.default_rng(seed).integers(0, len(ids) - context, size=count)

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / BATCH)

    def __getitem__(self, index: int):
        starts = self.starts[index * BATCH:(index + 1) * BATCH]
        windows = self.ids[starts[:, None] + self.span].astype(np.int32)
        return windows[:, :-1], windows[:, 1:]
