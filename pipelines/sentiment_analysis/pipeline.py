"""Sentiment analysis end to end: labelled texts -> text classifier -> accuracy, ROC-AUC, F1, errors table.

What the exported model takes depends on the backend it was trained on: on TensorFlow, raw strings
(TextVectorization is its first layer, so `mlflow models serve` takes text); on JAX/PyTorch, token ids of
shape (batch, sequence_length), made by `vectorize.Vectorizer` with the vocabulary stored in
deepsuite.json (and vocabulary.txt). `deepsuite predict` handles both.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deepsuite.common import reports
from deepsuite.common.data.text_tables import decode_text
from deepsuite.common.errors import ConfigError, DataError
from deepsuite.common.pipeline import DatasetInfo, Evaluation, FitData, Pipeline, Split, Splits, to_numpy
from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.sentiment_analysis import config as cfg
from deepsuite.pipelines.sentiment_analysis import data as text_data
from deepsuite.pipelines.sentiment_analysis import evaluation
from deepsuite.pipelines.sentiment_analysis import layers as _custom_layers  # noqa: F401 - registers them for load_model
from deepsuite.pipelines.sentiment_analysis.vectorize import (Vectorizer, build_vocabulary, nb_log_ratios, ratios_from_counts,
                                                    tokenize)


@dataclass
class TextSplit(Split):
    """A split whose `x` is what the model takes (strings or ids) and `texts` the raw strings for reports."""

    texts: list[str] = field(default_factory=list)


class SentimentAnalysisPipeline(Pipeline):
    description = ("text polarity classifier (raw text in, P(positive) out): NB-weighted n-grams (default), "
                   "CNN, bi-GRU or transformer")
    config_cls = cfg.SentimentConfig
    presets = cfg.PRESETS
    default_dataset = "VADER movie-review sentences (10,605 from Pang & Lee; inside vaderSentiment==3.3.2 on PyPI)"
    monitor = "val_accuracy"
    monitor_mode = "max"

    def load_data(self, config: cfg.SentimentConfig) -> Splits:
        from deepsuite.pipelines.sentiment_analysis.model import takes_raw_strings

        data = config.data
        corpus = text_data.load_corpus(data)
        index = text_data.split_indices(corpus, data.val_fraction, data.test_fraction, data.split_seed)
        if data.max_train_samples:
            index["train"] = index["train"][: data.max_train_samples]
            index["val"] = index["val"][: max(10, int(data.max_train_samples * data.val_fraction))]
        if data.max_test_samples:
            index["test"] = index["test"][: data.max_test_samples]
        texts = {k: [corpus.texts[i] for i in idx] for k, idx in index.items()}
        labels = {k: corpus.labels[idx].astype(np.int8) for k, idx in index.items()}
        digest = text_data.split_digest(texts, labels)
        vocabulary = build_vocabulary(texts["train"], config.model.vocab_size)
        raw = takes_raw_strings()
        vectorizer = Vectorizer(vocabulary, config.model.sequence_length)
        model_x = (lambda t: np.array(t, dtype=object)) if raw else vectorizer  # noqa: E731
        card = corpus.card + [
            f"split: train {len(texts['train'])} / val {len(texts['val'])} / test {len(texts['test'])}, "
            f"stratified, data.split_seed={data.split_seed}, digest {digest}",
            f"vocabulary: {len(vocabulary)} tokens from the training split (lower-cased, punctuation stripped)"]
        info = DatasetInfo(name=corpus.name, source=corpus.source, digest=digest, version=text_data.VADER
                           if data.source in text_data.VADER_SETS else "",
                           metadata={"class_names": text_data.CLASS_NAMES, "label_rule": corpus.label_rule,
                                     "data_card": card, "split_digest": digest, "split_seed": data.split_seed,
                                     "model_input": "text" if raw else "token_ids",
                                     "sequence_length": config.model.sequence_length, "vocabulary": vocabulary})
        splits = {k: TextSplit(model_x(texts[k]), labels[k], texts[k]) for k in texts}
        return Splits(splits["train"], splits["val"], splits["test"], info)

    def build_model(self, config: cfg.SentimentConfig, splits: Splits):
        import keras

        from deepsuite.pipelines.sentiment_analysis.model import build_classifier

        vocabulary = splits.info.metadata["vocabulary"]
        model_cfg = config.model
        if model_cfg.char_ngrams and splits.info.metadata["model_input"] != "text":
            if not model_cfg.ngrams and model_cfg.kind == "ngram":
                raise ConfigError("model.char_ngrams needs the TensorFlow backend and model.ngrams is 0: nothing to "
                                 "train; set model.ngrams >= 1")
            warnings.warn(f"model.char_ngrams={model_cfg.char_ngrams} left out: the character n-gram bag needs "
                          "raw-string input (TensorFlow backend)", stacklevel=2)
            model_cfg = model_cfg.model_copy(update={"char_ngrams": 0})
        ratios = None
        if model_cfg.ngrams:
            ids = Vectorizer(vocabulary, model_cfg.sequence_length)(_texts(splits.train))
            ratios = nb_log_ratios(ids, splits.train.y, model_cfg.ngrams, len(vocabulary), model_cfg.ngram_buckets,
                                   model_cfg.nb_alpha)
        char_vocabulary = char_ratios = None
        if model_cfg.char_ngrams:
            char_vocabulary, char_ratios = _char_ngram_ratios(_texts(splits.train), splits.train.y, model_cfg)
        model = build_classifier(vocabulary, model_cfg, ratios, char_vocabulary, char_ratios)
        steps = steps_per_epoch(len(splits.train), config.train.batch_size)
        model.compile(optimizer=optimizer(config.train, steps), loss="binary_crossentropy",
                      metrics=["accuracy", keras.metrics.AUC(name="auc")])
        return model

    def fit_data(self, splits: Splits, config) -> FitData:
        as_target = lambda y: np.asarray(y, dtype="float32")[:, None]  # noqa: E731
        return FitData(splits.train.x, as_target(splits.train.y), (splits.val.x, as_target(splits.val.y)))

    def evaluate(self, model, splits: Splits, config) -> Evaluation:
        names = splits.info.metadata["class_names"]
        p = to_numpy(model.predict(splits.test.x, batch_size=512, verbose=0)).reshape(-1)
        y = np.asarray(splits.test.y, dtype=np.int64)
        metrics = evaluation.binary_metrics(y, p)
        matrix = reports.confusion_matrix(y, (p >= 0.5).astype(int), names)
        figures = {"confusion_matrix": reports.confusion_matrix_figure(matrix, names),
                   "roc_curve": evaluation.roc_curve_figure(y, p, metrics["roc_auc"])}
        errors = evaluation.confident_errors(_texts(splits.test), y, p, names)
        tables = {"most_confident_errors.csv": evaluation.errors_csv(errors),
                  "most_confident_errors.html": evaluation.errors_html(errors)}
        meta = splits.info.metadata
        takes = "raw strings" if meta["model_input"] == "text" else \
            f"token ids of shape (batch, {meta['sequence_length']}), vocabulary in vocabulary.txt"
        notes = [*meta.get("data_card", []), f"exported model input: {takes}",
                 f"{len(errors)} most confident of {int(((p >= 0.5) != y).sum())} test errors in "
                 "tables/most_confident_errors.{csv,html}"]
        return Evaluation(metrics, figures, tables, notes)

    def export_extras(self, model, splits: Splits, config, export_dir) -> None:
        vocabulary = splits.info.metadata["vocabulary"]
        (Path(export_dir) / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")

    def predict(self, model, inputs: list[str], metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        items = _expand_inputs(inputs)
        vectorizer = Vectorizer(metadata["vocabulary"], int(metadata["sequence_length"]))
        names = metadata["class_names"]
        scored = [i for i, (_, text) in enumerate(items) if tokenize(text)]
        probabilities = np.zeros(len(items))
        if scored:
            texts = [items[i][1] for i in scored]
            takes_text = "string" in str(model.inputs[0].dtype)
            batch = np.array(texts, dtype=object) if takes_text else vectorizer(texts)
            probabilities[scored] = to_numpy(model.predict(batch, batch_size=256, verbose=0)).reshape(-1)
        results = []
        for i, (where, text) in enumerate(items):
            shown = text if len(text) <= 70 else text[:67] + "..."
            if i not in scored:
                why = "empty text" if not text.strip() else "no words (only punctuation/symbols)"
                results.append({"input": where, "text": text, "label": None, "probability": None,
                                "positive_probability": None, "note": why,
                                "summary": f"{where}: no prediction ({why}) {shown!r}"})
                continue
            p = float(probabilities[i])
            label = names[int(p >= 0.5)]
            known = vectorizer.known_fraction(text)
            result = {"input": where, "text": text, "label": label, "probability": round(max(p, 1 - p), 4),
                      "positive_probability": round(p, 4), "known_word_fraction": round(known, 3)}
            note = "" if known else "  [no word seen in training: the answer is the model's prior]"
            if not known:
                result["note"] = "no word of the text is in the vocabulary"
            result["summary"] = f"{where}: {label} ({result['probability']:.3f}) {shown!r}{note}"
            results.append(result)
        return results

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)


def _char_ngram_ratios(texts: list[str], labels, config: cfg.TextModel) -> tuple[list[str], np.ndarray]:
    """The training split's most frequent character n-grams (without [UNK]) and their NB log-count ratios.

    Counted by the model's own TextVectorization (so they match what it sees); n-grams holding a line break
    are dropped, since the vocabulary is saved one entry per line.
    """
    from deepsuite.pipelines.sentiment_analysis.model import char_vectorizer

    counter = char_vectorizer(config, name="char_counter")
    counter.adapt(np.array(texts, dtype=object), batch_size=512)
    vocabulary = [str(t) for t in counter.get_vocabulary()[1:] if "\n" not in t and "\r" not in t]
    counter = char_vectorizer(config, vocabulary, name="char_counter")
    labels = np.asarray(labels).reshape(-1)
    counts = np.zeros((2, len(vocabulary) + 1))
    for start in range(0, len(texts), 256):
        bag = to_numpy(counter(np.array(texts[start: start + 256], dtype=object)))
        for label in (0, 1):
            counts[label] += bag[labels[start: start + 256] == label].sum(axis=0)
    return vocabulary, ratios_from_counts(counts, config.nb_alpha, ignored=1)


def _texts(split: Split) -> list[str]:
    return split.texts if isinstance(split, TextSplit) else [str(t) for t in split.x]


def _expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """CLI inputs -> (where, text): an existing file contributes one text per non-blank line."""
    if not inputs:
        raise DataError("predict needs at least one text (or a file with one text per line)")
    items = []
    for number, value in enumerate(inputs, 1):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"input {number} is not valid UTF-8 text; pass UTF-8 or put the text in a file") from None
        path = Path(value)
        if value.strip() and len(value) < 4096 and "\n" not in value and path.is_file():
            lines = decode_text(path.read_bytes(), str(path)).splitlines()
            texts = [(f"{path.name}:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]
            if not texts:
                raise DataError(f"{path}: no text in the file (expected one text per line)")
            items.extend(texts)
        else:
            items.append((f"[{number}]", value))
    return items
