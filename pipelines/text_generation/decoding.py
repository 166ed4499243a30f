"""Token-by-token decoding that reuses the trained layers and never re-runs the whole prefix per token.

gpt: a key/value cache. A "prefill" model (the trained graph, also returning each block's keys and
values) runs the prompt once; a "step" model, built from the same layers, takes one token, its
position and the cache (batch, context, 2, heads, head_dim) per block, writes the new keys/values at
that position and attends over the positions filled so far: O(context) work per token instead of
O(context^2). Both have fixed shapes (the prompt is right-padded to the context; causal attention makes
the padding invisible), so Keras compiles each once (`predict_on_batch`: jax.jit or tf.function).
Positions are learned only up to `context`: when the cache is full it is rebuilt from the last 3/4 of
the context (one prefill every context/4 tokens), so each new token sees between 3/4 and all of the
context window (nanoGPT instead recomputes the whole window for every token).
lstm: the recurrent state (h, c) of each layer is the cache; generation length is unbounded.

Both expose start(ids (B, T)) -> (logits (B, V), state) and step(tokens (B,), state) -> (logits, state),
logits being float64 NumPy arrays for `sampling.py`. Layer names are those `model.py` gives.
"""
from __future__ import annotations

import re

import keras
import numpy as np
from keras import ops

from deepsuite.common.errors import DeepsuiteError


def decoder_for(model):
    names = {layer.name for layer in model.layers}
    if "block0_qkv" in names:
        return GptDecoder(model)
    if "lstm0" in names:
        return LstmDecoder(model)
    raise DeepsuiteError(f"model {model.name!r} is not a text-generation model (no block0_qkv or lstm0 layer)")


def _as_list(outputs) -> list[np.ndarray]:
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


class GptDecoder:
    kind = "gpt"

    def __init__(self, model):
        get = model.get_layer
        self.num_layers = sum(1 for layer in model.layers if re.fullmatch(r"block\d+_qkv", layer.name))
        self.context = int(get("position_embedding").input_dim)
        self.keep = max(1, self.context * 3 // 4)
        heads = [get(f"block{i}_heads").output for i in range(self.num_layers)]          # (B, T, 3, H, D/H)
        self.prefill_model = keras.Model(model.inputs, [model.outputs[0], *heads], name="gpt_prefill")
        self.step_model = self._build_step_model(model)

    def _build_step_model(self, model) -> keras.Model:
        get, context = model.get_layer, self.context
        _, _, heads, head_dim = get("block0_heads").target_shape
        token = keras.Input((1,), dtype="int32", name="token")
        position = keras.Input((1,), dtype="int32", name="position")
        caches = [keras.Input((context, 2, heads, head_dim), name=f"cache{i}") for i in range(self.num_layers)]
        slots = ops.expand_dims(ops.arange(context, dtype="int32"), 0)                      # (1, S)
        visible = ops.reshape(ops.less_equal(slots, position), (-1, 1, 1, context))                      # (B, 1, 1, S)
        write = ops.cast(ops.reshape(ops.equal(slots, position), (-1, context, 1, 1, 1)), "float32")  # (B, S, 1, 1, 1)
        x = get("token_embedding")(token) + get("position_embedding")(position)            # (B, 1, D)
        new_caches = []
        for i, cache in enumerate(caches):
            qkv = get(f"block{i}_heads")(get(f"block{i}_qkv")(get(f"block{i}_ln1")(x)))     # (B, 1, 3, H, D/H)
            cache = cache * (1.0 - write) + qkv[:, :, 1:] * write                          # write slot `position`
            attended = ops.dot_product_attention(qkv[:, :, 0], cache[:, :, 0], cache[:, :, 1], mask=visible)
            x = x + get(f"block{i}_proj")(get(f"block{i}_merge")(attended))
            x = x + get(f"block{i}_out")(get(f"block{i}_fc")(get(f"block{i}_ln2")(x)))
            new_caches.append(cache)
        logits = get("logits")(get("final_ln")(x))[:, 0]
        return keras.Model([token, position, *caches], [logits, *new_caches], name="gpt_step")

    def start(self, ids: np.ndarray):
        """Run the prompt (its last `context` tokens) once and fill the cache."""
        ids = np.asarray(ids, dtype=np.int32)[:, -self.context:]
        batch, length = ids.shape
        padded = np.zeros((batch, self.context), np.int32)
        padded[:, :length] = ids
        logits, *heads = _as_list(self.prefill_model.predict_on_batch(padded))
        caches = [h[:, :, 1:].astype(np.float32) for h in heads]    # positions >= length are masked until written
        return logits[:, length - 1].astype(np.float64), {"caches": caches, "length": length, "history": ids}

    def step(self, tokens: np.ndarray, state):
        tokens = np.asarray(tokens, dtype=np.int32).reshape(-1, 1)
        history = np.concatenate([state["history"], tokens], axis=1)
        position = state["length"]
        if position >= self.context:  # full: rebuild from the most recent tokens
            return self.start(history[:, -self.keep:])
        where = np.full_like(tokens, position)
        logits, *caches = _as_list(self.step_model.predict_on_batch([tokens, where, *state["caches"]]))
        return logits.astype(np.float64), {"caches": caches, "length": position + 1, "history": history}


class LstmDecoder:
    kind = "lstm"

    def __init__(self, model):
        self.cells = []
        while any(layer.name == f"lstm{len(self.cells)}" for layer in model.layers):
            self.cells.append(_copy_cell(model.get_layer(f"lstm{len(self.cells)}"), f"lstm{len(self.cells)}_step"))
        self.context = None  # unbounded
        token = keras.Input((), dtype="int32", name="token")
        states = [keras.Input((cell.units,), name=f"{kind}{i}") for i, cell in enumerate(self.cells)
                  for kind in ("h", "c")]
        x = model.get_layer("token_embedding")(token)                                     # (B, D)
        new_states = []
        for i, cell in enumerate(self.cells):
            x, (h, c) = cell(x, [states[2 * i], states[2 * i + 1]], training=False)
            new_states += [h, c]
        logits = model.get_layer("logits")(x)
        self.step_model = keras.Model([token, *states], [logits, *new_states], name="lstm_step")

    def start(self, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int32)
        state = [np.zeros((ids.shape[0], cell.units), np.float32) for cell in self.cells for _ in ("h", "c")]
        logits = None
        for t in range(ids.shape[1]):
            logits, state = self.step(ids[:, t], state)
        return logits, state

    def step(self, tokens: np.ndarray, state):
        logits, *state = _as_list(self.step_model.predict_on_batch([np.asarray(tokens, np.int32).reshape(-1),
                                                                      *state]))
        return logits.astype(np.float64), state


def _copy_cell(layer, name: str):
    """A uniquely named LSTMCell holding the trained layer's weights (its own cell is named "lstm_cell")."""
    trained = layer.cell
    cell = keras.layers.LSTMCell(trained.units, activation=trained.activation,
                                 recurrent_activation=trained.recurrent_activation, use_bias=trained.use_bias,
                                 unit_forget_bias=False, name=name)
    cell.build((None, trained.kernel.shape[0]))
    cell.set_weights(trained.get_weights())
    return cell
