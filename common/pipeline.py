"""The seam every domain fills in; `deepsuite.common.runner` drives it the same way for every pipeline.

A pipeline declares its config model and presets, loads train/validation/test splits with its typed
export metadata, builds a compiled Functional model, maps a tuner's hyperparameters onto its config,
evaluates, and declares its inference commands (`commands`) with typed options. Nothing here names a
domain or a verb: a new domain is a new folder (pipelines/README.md) and an entry point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from deepsuite.common.commands import Command
from deepsuite.common.config import RunConfig
from deepsuite.common.export import ExportMetadata


@dataclass
class Split:
    """Inputs and targets of one split; `x` may be an array or a dict of arrays (named inputs)."""

    x: Any
    y: Any

    def __len__(self) -> int:
        first = next(iter(self.x.values())) if isinstance(self.x, dict) else self.x
        return len(first)

    def head(self, n: int) -> "Split":
        take = (lambda a: a[:n])
        x = {k: take(v) for k, v in self.x.items()} if isinstance(self.x, dict) else take(self.x)
        y = {k: take(v) for k, v in self.y.items()} if isinstance(self.y, dict) else (None if self.y is None else take(self.y))
        return Split(x, y)


@dataclass
class DatasetInfo:
    """What MLflow records as the run's dataset lineage."""

    name: str
    source: str
    digest: str
    version: str = ""


@dataclass(frozen=True)
class Reference:
    """A figure the pipeline's README quotes, declared once on the pipeline class (`Pipeline.references`): a
    run's report shows it beside the run's own `metric` when the run's data is the data it was measured on
    (tests/test_reports.py checks that every `quoted` text is in the README, so the two cannot drift apart)."""

    metric: str          # the run's metric it stands beside, e.g. "test_accuracy"
    quoted: str          # the figure exactly as the README prints it, e.g. "93.30 %"
    measured: str        # what was run, where and when: command, preset, split, seeds, machine, date
    dataset: str         # DatasetInfo.name of the data it was measured on, e.g. "fashion_mnist"
    version: str = ""    # DatasetInfo.version it needs too (e.g. a split protocol); "" for any
    source_has: str = ""  # text DatasetInfo.source must contain (e.g. the test folder); "" for any

    def applies_to(self, info: DatasetInfo) -> bool:
        return (info.name == self.dataset and self.version in ("", info.version)
                and self.source_has in info.source)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    info: DatasetInfo
    metadata: ExportMetadata = field(default_factory=ExportMetadata)  # the pipeline's metadata_cls, exported

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


@dataclass
class Evaluation:
    """Final test metrics plus the report artifacts (figures under plots/, text tables under tables/)."""

    metrics: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)   # name -> matplotlib Figure
    tables: dict[str, str] = field(default_factory=dict)    # file name -> CSV/HTML/text content
    notes: list[str] = field(default_factory=list)          # lines for the report's summary


@dataclass
class FitData:
    """What `fit()` receives; a PyDataset or arrays, plus optional class weights."""

    x: Any
    y: Any = None
    validation_data: Any = None
    class_weight: Mapping[int, float] | None = None
    steps_per_epoch: int | None = None


class Pipeline:
    """Base class: subclasses set the class attributes and implement the four methods."""

    name: str                                # set by the registry from the entry point, e.g. "image-classification"
    description: ClassVar[str]
    config_cls: ClassVar[type[RunConfig]]
    metadata_cls: ClassVar[type[ExportMetadata]] = ExportMetadata   # what load_data puts in Splits.metadata
    commands: ClassVar[tuple[Command, ...]] = ()                     # inference verbs, e.g. predict
    presets: ClassVar[dict[str, dict[str, Any]]]
    default_dataset: ClassVar[str]
    monitor: ClassVar[str] = "val_loss"      # early-stopping metric and default tuning objective
    monitor_mode: ClassVar[str] = "min"
    references: ClassVar[tuple[Reference, ...]] = ()  # the figures the pipeline's README quotes, for reports

    def load_data(self, config: RunConfig) -> Splits:
        raise NotImplementedError

    def build_model(self, config: RunConfig, splits: Splits):
        """Return a compiled Functional keras.Model that takes raw inputs."""
        raise NotImplementedError

    def search_space(self, hp, config: RunConfig) -> RunConfig:
        """Return `config` with the tuner's choices applied (hp is a keras_tuner HyperParameters)."""
        raise NotImplementedError(f"{self.name} has no hyperparameter search space yet")

    def evaluate(self, model, splits: Splits, config: RunConfig) -> Evaluation:
        raise NotImplementedError

    def fit_data(self, splits: Splits, config: RunConfig) -> FitData:
        """Arrays by default; override for generators, class weights or dict inputs."""
        return FitData(x=splits.train.x, y=splits.train.y, validation_data=(splits.val.x, splits.val.y))

    def input_example(self, splits: Splits) -> Any:
        """A few raw test inputs, saved with the model as its MLflow input example and signature."""
        return splits.test.head(4).x

    def request_example(self, splits: Splits) -> tuple[list, dict[str, Any]] | None:
        """(rows, params): a request as a user sends it to the MLflow model (its input example), e.g. two images
        as pixel arrays and no params. By default two of `input_example`'s images (floats 0-1 as uint8) or
        texts; a pipeline whose rows are something else (user ids, prompts) overrides this; None: no example."""
        if not self.commands or not self.commands[0].row_field:
            return None
        example = self.input_example(splits)
        if not isinstance(example, np.ndarray) or len(example) == 0:
            return None
        rows = example[:2]
        if rows.dtype.kind in "OUS":
            return [str(text) for text in rows], {}
        if not self.commands[0].inputs_are_files or rows.ndim != 4 or rows.shape[-1] not in (1, 3, 4):
            return None
        if rows.dtype.kind == "f" and 0.0 <= rows.min() and rows.max() <= 1.0:
            rows = np.round(rows * 255.0)
        images = rows.astype(np.uint8)
        return [(image[..., 0] if image.shape[-1] == 1 else image).tolist() for image in images], {}

    def references_for(self, info: DatasetInfo) -> list[Reference]:
        """The README's figures measured on the data `info` describes: what a run's report shows beside its own."""
        return [reference for reference in self.references if reference.applies_to(info)]

    def run_name(self, config: RunConfig) -> str:
        kind = getattr(config.model, "kind", None) or self.name
        return f"{kind}-{config.preset}"

    def export_extras(self, model, splits: Splits, config: RunConfig, export_dir) -> None:
        """Write extra files that inference needs (vocabulary, item titles...) into the export folder."""

    def command(self, verb: str) -> Command:
        """The declared command `verb`, or an error listing what this pipeline answers."""
        from deepsuite.common.errors import DeepsuiteError

        for command in self.commands:
            if command.name == verb:
                return command
        offered = ", ".join(c.name for c in self.commands) or "no inference command"
        raise DeepsuiteError(f"pipeline {self.name!r} does not support `deepsuite {verb}` (it offers: {offered})")


def to_numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))
