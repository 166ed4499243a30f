"""Sentiment analysis end to end: labelled texts -> text classifier -> accuracy, ROC-AUC, F1, errors table.

What the exported model takes depends on the backend it was trained on: on TensorFlow, raw strings
(TextVectorization is its first layer, so `mlflow models serve` takes text); on JAX/PyTorch, token ids of
shape (batch, sequence_length), made by `vectorize.Vectorizer` with the vocabulary stored in
deepsuite.json (and vocabulary.txt). `deepsuite predict` handles both.
"""
from __future__ import annotations

from deepsuite.common.commands import Command
from deepsuite.common.export import Export
from deepsuite.common.pipeline import Evaluation, FitData, Pipeline, Reference, Splits
from deepsuite.pipelines.sentiment_analysis import config as cfg
from deepsuite.pipelines.sentiment_analysis import data, evaluation, inference
from deepsuite.pipelines.sentiment_analysis.contract import PredictOptions, SentimentAnalysisMetadata


class SentimentAnalysisPipeline(Pipeline):
    description = ("text polarity classifier (raw text in, P(positive) out): NB-weighted n-grams (default), "
                   "CNN, bi-GRU or transformer")
    config_cls = cfg.SentimentAnalysisConfig
    metadata_cls = SentimentAnalysisMetadata
    commands = (Command("predict", "label and probability for texts, or files with one text per line",
                        PredictOptions, "predict", example={"inputs": ["A gorgeous, witty delight."]}),)
    presets = cfg.PRESETS
    default_dataset = "VADER movie-review sentences (10,605 from Pang & Lee; inside vaderSentiment==3.3.2 on PyPI)"
    monitor = "val_accuracy"
    monitor_mode = "max"
    references = (Reference("test_accuracy", "81.7%", "python bench/sentiment_analysis.py --set seed=42: default "
                            "preset, the 1,057-sentence test split, 2-core CPU", "movie_reviews"),)

    def load_data(self, config: cfg.SentimentAnalysisConfig) -> Splits:
        return data.load_data(config)

    def build_model(self, config: cfg.SentimentAnalysisConfig, splits: Splits):
        from deepsuite.pipelines.sentiment_analysis.model import build_model  # Keras loads when training

        return build_model(config, splits)

    def fit_data(self, splits: Splits, config: cfg.SentimentAnalysisConfig) -> FitData:
        return data.fit_data(splits, config)

    def evaluate(self, model, splits: Splits, config: cfg.SentimentAnalysisConfig) -> Evaluation:
        return evaluation.evaluate(model, splits, config)

    def request_example(self, splits: Splits) -> tuple[list, dict]:
        return list(splits.test.texts[:2]), {}  # the texts, whatever the model takes (strings or token ids)

    def export_extras(self, model, splits: Splits, config: cfg.SentimentAnalysisConfig, export_dir) -> None:
        inference.write_vocabulary(splits, export_dir)

    def predict(self, model, export: Export, options: PredictOptions) -> list[dict]:
        return inference.predict(model, export, options)

    def search_space(self, hp, config: cfg.SentimentAnalysisConfig) -> cfg.SentimentAnalysisConfig:
        return cfg.search_space(hp, config)
