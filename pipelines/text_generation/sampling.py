"""The one implementation of next-token choice and of the generation loop, used by `deepsuite generate`
and by the samples written after training.

Order of the controls (as in Hugging Face transformers): temperature 0 means greedy (argmax; top-k and
top-p are then irrelevant); otherwise logits / temperature -> keep the top-k -> keep the smallest set
of tokens whose probability reaches top-p (the token that crosses it included) -> sample with a NumPy
generator seeded by `seed`, so the same seed gives the same text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepsuite.common.errors import ConfigError


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.temperature is None or not np.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"--temperature {self.temperature}: must be >= 0 (0 = greedy, 1 = the model's "
                              "own distribution)")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top-k {self.top_k}: must be >= 1 (or left out for no top-k filter)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p {self.top_p}: must be in (0, 1], e.g. 0.9 (1 = no nucleus filter)")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed {self.seed}: must be a non-negative integer")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def probabilities(logits: np.ndarray, options: SamplingOptions) -> np.ndarray:
    """(B, V) logits -> (B, V) probabilities after temperature, top-k and top-p (rows sum to 1)."""
    logits = np.asarray(logits, dtype=np.float64)
    if options.greedy:
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=-1)] = 1.0
        return probs
    scaled = logits / options.temperature
    if options.top_k is not None and options.top_k < scaled.shape[-1]:
        kth = np.partition(scaled, -options.top_k, axis=-1)[:, -options.top_k][:, None]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if options.top_p is not None and options.top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        keep_sorted = mass_before < options.top_p                          # the first token is always kept
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def choose(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """One next token per row."""
    if options.greedy:
        return np.asarray(logits).argmax(axis=-1).astype(np.int32)
    probs = probabilities(logits, options)
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= draws).sum(axis=-1), probs.shape[-1] - 1).astype(np.int32)


@dataclass
class Generated:
    ids: list[int]        # generated tokens, without the prompt and without the stop sequence
    stopped: bool         # True when the stop sequence ended generation


def generate(decoder, prompt_ids: np.ndarray, max_tokens: int, options: SamplingOptions,
             stop_ids: list[int] | None = None) -> Generated:
    """Continue `prompt_ids` (1-D, non-empty) by up to `max_tokens`; stop early after `stop_ids`."""
    if max_tokens < 1:
        raise ConfigError(f"--max-tokens {max_tokens}: must be >= 1")
    rng = np.random.default_rng(options.seed)
    logits, state = decoder.start(np.asarray(prompt_ids, dtype=np.int32)[None])
    out: list[int] = []
    stop_ids = list(stop_ids or [])
    for i in range(max_tokens):
        token = int(choose(logits, options, rng)[0])
        out.append(token)
        if stop_ids and out[-len(stop_ids):] == stop_ids:
            return Generated(out[: -len(stop_ids)], stopped=True)
        if i + 1 < max_tokens:
            logits, state = decoder.step(np.array([token]), state)
    return Generated(out, stopped=False)
