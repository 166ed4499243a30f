"""`deepsuite predict` for image classification: image files in, the top classes with probabilities out."""
from __future__ import annotations

import numpy as np

from deepsuite.common.data.images import read_image
from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import to_numpy
from deepsuite.pipelines.image_classification.contract import ImageClassificationMetadata, PredictOptions


def predict(model, export: Export, options: PredictOptions) -> list[dict]:
    """One answer per file: the most likely class, its probability and the `top` classes (4 decimals)."""
    metadata: ImageClassificationMetadata = export.metadata
    names = metadata.class_names
    height, width, channels = metadata.input_shape
    if not options.inputs:
        raise DataError("predict needs at least one image file")
    # any size or colour mode is converted to what the model was trained on
    batch = np.stack([read_image(path, channels=channels, size=(height, width)) for path in options.inputs])
    probs = to_numpy(model.predict(batch, verbose=0))
    results = []
    for path, p in zip(options.inputs, probs):
        order = np.argsort(-p)[: options.top]
        results.append({"input": path, "label": names[order[0]], "probability": float(p[order[0]]),
                        "top": {names[i]: round(float(p[i]), 4) for i in order}})
    return results
