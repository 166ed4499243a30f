"""Test figures of a language model (exact loss, perplexity, bits and accuracy per token) and its samples.

The samples (tables/samples.txt, the `evaluation` config section) are one continuation per temperature
from the same prompt and seed, through the same decoding as `deepsuite generate`.
"""
from __future__ import annotations

import time

import numpy as np

from deepsuite.common.pipeline import Evaluation, Splits
from deepsuite.pipelines.text_generation import tokenizer as tok
from deepsuite.pipelines.text_generation.config import EvaluationConfig, TextGenerationConfig
from deepsuite.pipelines.text_generation.data import EVAL_BATCH, SequentialWindows
from deepsuite.pipelines.text_generation.decoding import decoder_for
from deepsuite.pipelines.text_generation.inference import metadata_tokenizer, prompt_tokens
from deepsuite.pipelines.text_generation.metrics import Accumulator
from deepsuite.pipelines.text_generation.sampling import SamplingOptions, generate


def evaluate(model, splits: Splits, config: TextGenerationConfig) -> Evaluation:
    drop_training_metrics(model)
    windows = SequentialWindows(splits.test.x, config.model.context, EVAL_BATCH, config.data.max_eval_tokens)
    accumulator = Accumulator()
    for i in range(len(windows)):
        x, y = windows[i]
        accumulator.add(y, np.asarray(model.predict_on_batch(x)))
    metrics = accumulator.metrics()
    table, speed = samples_table(model, metadata_tokenizer(splits.metadata), config.evaluation)
    metrics["generation_tokens_per_second"] = speed
    which = ("the validation text (no separate test text: data.test_fraction=0, as nanoGPT reports val loss)"
             if splits.metadata.test_is_validation else "the held-out end of the corpus")
    notes = [f"test figures are on {which}: {metrics['tokens']:.0f} tokens in windows of {config.model.context}",
             f"loss {metrics['loss']:.4f} nats/token, perplexity {metrics['perplexity']:.3f}, "
             f"{metrics['bits_per_token']:.3f} bits/token",
             f"sampling: {speed:.0f} tokens/s with the {config.model.kind} cache (tables/samples.txt)"]
    return Evaluation(metrics, tables={"samples.txt": table}, notes=notes)


def samples_table(model, tokenizer: tok.Tokenizer, samples: EvaluationConfig) -> tuple[str, float]:
    """One sample per temperature from the same prompt and seed, as a plain-text table; and tokens/second."""
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


def drop_training_metrics(model) -> None:
    """Recompile with the same optimizer and loss but no custom metric, so model.keras loads anywhere."""
    model.compile(optimizer=model.optimizer, loss=model.loss)
