"""`deepsuite predict` on raw texts: label and probability per text, either kind of export (strings or ids).

Each input is a text; `--files` names files whose non-blank lines are texts (UTF-8), read on the CLI only:
a text that happens to name a file is still just that text (a scoring server opens no file a request names). An empty or punctuation-only
text gets a defined answer without a model call; a text with no known word is scored and says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.data.text_tables import decode_text
from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import Splits, to_numpy
from deepsuite.pipelines.sentiment_analysis.contract import PredictOptions
from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, tokenize


def predict(model, export: Export, options: PredictOptions) -> list[dict]:
    items = expand_inputs(options.inputs, options.files)
    metadata = export.metadata
    vectorizer = Vectorizer(metadata.vocabulary, metadata.sequence_length)
    names = metadata.class_names
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


def expand_inputs(inputs: list[str], files: list[Path] = ()) -> list[tuple[str, str]]:
    """(where, text) pairs: the texts as given, then one per non-blank line of each file."""
    if not inputs and not files:
        raise DataError("predict needs at least one text (or --files with one text per line)")
    items = []
    for number, value in enumerate(inputs, 1):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"input {number} is not valid UTF-8 text; pass UTF-8 or put the text in a file") from None
        items.append((f"[{number}]", value))
    for path in map(Path, files):
        if not path.is_file():
            raise DataError(f"{path}: no such file of texts")
        lines = decode_text(path.read_bytes(), str(path)).splitlines()
        texts = [(f"{path.name}:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]
        if not texts:
            raise DataError(f"{path}: no text in the file (expected one text per line)")
        items.extend(texts)
    return items


def write_vocabulary(splits: Splits, export_dir) -> None:
    """vocabulary.txt beside the model: what a token-id export needs outside deepsuite (one token a line)."""
    vocabulary = splits.metadata.vocabulary
    (Path(export_dir) / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
