"""Three recommenders over raw (user_id, item_id) inputs; ids are mapped to indices inside the model.

    mf:        rating = mu + b_u + b_i + <p_u, q_i>                               (biased MF, Koren 2009)
    neumf:     rating = mu + b_u + b_i + Dense([p_u * q_i, MLP([p'_u, q'_i])])  (NeuMF's two branches, regression)
    two_tower: score  = cos(user tower, item tower) / temperature, trained with in-batch negatives

With side features, p_u gains W_u f_u (gender, age band, occupation) and q_i gains W_i g_i (genres), and the
biases a linear term of them: a user or item without training ratings still gets a sensible score.
Index 0 is the unknown id: its rows are zero and stay zero, so unknown ids fall back to the biases/features.
"""
from __future__ import annotations

import zlib

import keras
import numpy as np
from keras import layers

from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.recommendation.config import ModelConfig, RecommendationConfig
from deepsuite.pipelines.recommendation.layers import IdLookup, InBatchSoftmax, L2Penalty, RatingRange
from deepsuite.pipelines.recommendation.splits import RatingSplits, fit_interactions, model_vocab


def build(config: RecommendationConfig, splits: RatingSplits) -> keras.Model:
    """The compiled model for config.model.kind, sized and initialised from the training catalogue."""
    cat, id_mode = splits.catalogue, splits.metadata.id_mode
    fit = fit_interactions(cat, config.model.kind)
    user_vocab, item_vocab = model_vocab(cat, id_mode)
    model = build_recommender(
        config.model, user_vocab, item_vocab, id_mode == "string", cat.user_features, cat.item_features,
        trained_rows(cat.num_users, fit.users), trained_rows(cat.num_items, fit.items),
        float(cat.train.ratings.mean()), cat.rating_range, log_frequency(cat.num_items, fit.items), config.seed)
    steps = steps_per_epoch(len(fit), config.train.batch_size)
    return compile_recommender(model, config.model.kind, optimizer(config.train, steps), id_mode == "string")


def id_inputs(user_vocab: np.ndarray, item_vocab: np.ndarray, string_ids: bool):
    """Model inputs and their lookups: int ids (any backend) or strings (TensorFlow's StringLookup)."""
    outputs = []
    for name, vocab in (("user_id", user_vocab), ("item_id", item_vocab)):
        if string_ids:
            raw = keras.Input(shape=(), dtype="string", name=name)
            index = layers.StringLookup(vocabulary=[str(v) for v in vocab], num_oov_indices=1,
                                        output_mode="int", name=f"{name}_lookup")(raw)
        else:
            raw = keras.Input(shape=(), dtype="int32", name=name)
            index = IdLookup(len(vocab), vocab, name=f"{name}_lookup")(raw)
        outputs.append((raw, index))
    return outputs


def _embedding(count: int, dim: int, name: str, stddev: float, trained_rows: np.ndarray | None, seed: int):
    """An embedding whose rows without training data (and row 0, unknown) start and stay at zero.

    Seeded from the run's seed and the layer name, so runs are reproducible.
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    initial = rng.normal(0, stddev, (count, dim)).astype("float32")
    if trained_rows is not None:
        initial *= trained_rows[:, None]
    return layers.Embedding(count, dim, weights=[initial], name=name)


def _features(index, matrix: np.ndarray | None, name: str):
    if matrix is None:
        return None
    return layers.Embedding(matrix.shape[0], matrix.shape[1], trainable=False, weights=[matrix], name=name)(index)


def _towers(user_index, item_index, sizes, features, trained, dim: int, prefix: str, stddev: float, l2: float,
            seed: int):
    """(user vector, item vector) = id embeddings [+ projected side features], each L2-penalised."""
    vectors = []
    for side, index, count in (("user", user_index, sizes[0]), ("item", item_index, sizes[1])):
        vector = _embedding(count, dim, f"{prefix}{side}_embedding", stddev, trained[side], seed)(index)
        vector = L2Penalty(l2, name=f"{prefix}{side}_l2")(vector)
        if features[side] is not None:
            projected = layers.Dense(dim, use_bias=False, name=f"{prefix}{side}_feature_projection",
                                     kernel_initializer=keras.initializers.RandomNormal(0, stddev))(features[side])
            vector = layers.Add(name=f"{prefix}{side}_vector")([vector, L2Penalty(l2, name=f"{prefix}{side}_feature_l2")(projected)])
        vectors.append(vector)
    return vectors


def _biases(user_index, item_index, sizes, features, l2: float):
    terms = []
    for side, index, count in (("user", user_index, sizes[0]), ("item", item_index, sizes[1])):
        bias = layers.Embedding(count, 1, embeddings_initializer="zeros", name=f"{side}_bias")(index)
        terms.append(L2Penalty(l2, name=f"{side}_bias_l2")(bias))
        if features[side] is not None:
            terms.append(layers.Dense(1, use_bias=False, kernel_initializer="zeros",
                                      name=f"{side}_feature_bias")(features[side]))
    return terms


def build_recommender(config: ModelConfig, user_vocab, item_vocab, string_ids: bool,
                      user_features, item_features, trained_users, trained_items, global_mean: float,
                      rating_range: tuple[float, float], log_item_frequency: np.ndarray, seed: int = 0) -> keras.Model:
    """The model for config.kind; trained_* are (n+1,) 0/1 rows that have training ratings."""
    (user_raw, user_index), (item_raw, item_index) = id_inputs(user_vocab, item_vocab, string_ids)
    sizes = (len(user_vocab) + 1, len(item_vocab) + 1)
    use = config.side_features
    features = {"user": _features(user_index, user_features if use else None, "user_features"),
                "item": _features(item_index, item_features if use else None, "item_features")}
    trained = {"user": trained_users, "item": trained_items}
    dim = config.embedding_dim
    inputs = {"user_id": user_raw, "item_id": item_raw}

    if config.kind == "two_tower":
        user_vector, item_vector = _towers(user_index, item_index, sizes, features, trained, dim, "", 0.05, 0.0, seed)
        user_vector = layers.UnitNormalization(name="user_tower")(user_vector)
        item_vector = layers.UnitNormalization(name="item_tower")(item_vector)
        score = InBatchSoftmax(sizes[1], config.temperature, config.logq_correction, log_item_frequency,
                               name="score", dtype="float32")(user_vector, item_vector, item_index)
        return keras.Model(inputs, score, name="two_tower")

    user_vector, item_vector = _towers(user_index, item_index, sizes, features, trained, dim, "", 0.01, config.l2, seed)
    interaction = layers.Dot(axes=-1, name="dot")([user_vector, item_vector])                    # (B, 1)
    if config.kind == "neumf":
        mlp_user, mlp_item = _towers(user_index, item_index, sizes, features, trained, dim, "mlp_", 0.01, config.l2, seed)
        hidden = layers.Concatenate(name="mlp_input")([mlp_user, mlp_item])
        for k, units in enumerate(config.mlp_units):
            hidden = layers.Dense(units, activation="relu", name=f"mlp_{k}")(hidden)
        gmf = layers.Multiply(name="gmf")([user_vector, item_vector])
        interaction = layers.Dense(1, name="neumf_head")(layers.Concatenate(name="neumf")([gmf, hidden]))
    terms = [interaction, *_biases(user_index, item_index, sizes, features, config.bias_l2)]
    # float32 under mixed precision: in bfloat16 a rating between 2 and 4 moves in steps of 1/64
    rating = layers.Add(name="sum", dtype="float32")(terms)
    rating = layers.Rescaling(1.0, offset=global_mean, name="global_mean", dtype="float32")(rating)
    rating = RatingRange(*rating_range, name="rating", dtype="float32")(rating)
    return keras.Model(inputs, rating, name=config.kind)


def trained_rows(count: int, indices: np.ndarray) -> np.ndarray:
    rows = np.zeros(count + 1, dtype="float32")
    rows[indices] = 1.0
    return rows


def log_frequency(count: int, indices: np.ndarray) -> np.ndarray:
    """log of each item's share of training interactions (unseen items: as if seen once)."""
    counts = np.maximum(np.bincount(indices, minlength=count + 1), 1).astype("float64")
    return np.log(counts / counts.sum()).astype("float32")


def compile_recommender(model: keras.Model, kind: str, optimizer, string_ids: bool) -> keras.Model:
    """Rating models: MSE with RMSE/MAE metrics; two_tower: its in-batch loss only (added by the layer).

    Several steps per call keep Keras' per-step overhead small next to these tiny models; XLA is off for
    string ids (StringLookup cannot be compiled).
    """
    common = {"optimizer": optimizer, "steps_per_execution": 10, "jit_compile": False if string_ids else "auto"}
    if kind == "two_tower":
        model.compile(loss=None, **common)
    else:
        model.compile(loss="mse", **common,
                      metrics=[keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")])
    return model

