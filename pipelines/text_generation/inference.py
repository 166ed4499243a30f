"""`deepsuite generate`: continue a prompt with the exported model, encoded and decoded by its tokenizer.

Text is encoded/decoded outside the model in NumPy, so generation runs on any Keras backend without
TensorFlow; `sampling.py` and `decoding.py` hold the one generation loop, shared with the report's samples.
"""
from __future__ import annotations

import time

import numpy as np

from deepsuite.common.export import Export
from deepsuite.pipelines.text_generation import tokenizer as tok
from deepsuite.pipelines.text_generation.contract import GenerateOptions, TextGenerationMetadata
from deepsuite.pipelines.text_generation.decoding import decoder_for
from deepsuite.pipelines.text_generation.sampling import SamplingOptions, generate as sample


def generate(model, export: Export, options: GenerateOptions) -> list[dict]:
    sampling = SamplingOptions(options.temperature, options.top_k, options.top_p, options.seed)
    tokenizer = export_tokenizer(export)
    prompt_ids = prompt_tokens(tokenizer, options.prompt)
    stop_ids = list(tokenizer.encode(options.stop, what="--stop")) if options.stop else None
    started = time.perf_counter()
    result = sample(decoder_for(model), prompt_ids, options.max_tokens, sampling, stop_ids)
    seconds = time.perf_counter() - started
    text = tokenizer.decode(result.ids)
    return [{"prompt": options.prompt, "text": text, "tokens": len(result.ids), "stopped": result.stopped,
             "seconds": round(seconds, 3), "summary": options.prompt + text}]


def prompt_tokens(tokenizer: tok.Tokenizer, prompt: str) -> np.ndarray:
    """The prompt's ids; an empty prompt starts from a newline (nanoGPT's start), else the first token."""
    if prompt:
        return tokenizer.encode(prompt, what="prompt")
    if tokenizer.kind == "byte" or "\n" in getattr(tokenizer, "index", {}):
        return tokenizer.encode("\n")
    return np.zeros(1, np.int32)


def export_tokenizer(export: Export) -> tok.Tokenizer:
    """tokenizer.json beside the model, else the copy in deepsuite.json (validated, so always present)."""
    if export.path(tok.TOKENIZER_FILE).exists():
        return tok.load(export.folder)
    return metadata_tokenizer(export.metadata)


def metadata_tokenizer(metadata: TextGenerationMetadata) -> tok.Tokenizer:
    return tok.from_dict(metadata.tokenizer.model_dump())


def save_tokenizer(metadata: TextGenerationMetadata, export_dir) -> None:
    """tokenizer.json beside model.keras: what `generate` (and anyone outside deepsuite) decodes with."""
    metadata_tokenizer(metadata).save(export_dir)
