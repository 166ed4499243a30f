"""`deepsuite predict` for medical images: DICOM/PNG/JPEG in, probability + label + Grad-CAM PNG out."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import to_numpy
from deepsuite.pipelines.medical_imaging.contract import MedicalImagingMetadata, PredictOptions
from deepsuite.pipelines.medical_imaging.data import centre_square, read_display_image, read_medical_image

OVERLAY_SIZE = 512  # Grad-CAM PNGs are drawn over the centre square of the input, at most this wide


def predict(model, export: Export, options: PredictOptions) -> list[dict]:
    """One answer per file: label (at the exported threshold for a binary task), probabilities, Grad-CAM PNG."""
    from deepsuite.pipelines.medical_imaging.gradcam import GradCam, overlay

    if not options.inputs:
        raise DataError("predict needs at least one image file (DICOM, PNG or JPEG)")
    metadata: MedicalImagingMetadata = export.metadata
    names = metadata.class_names
    height, width, channels = metadata.input_shape
    paths = [Path(p) for p in options.inputs]
    batch = np.stack([_read(path, (height, width), channels) for path in paths])
    probs = to_numpy(model.predict(batch, verbose=0))
    pos = metadata.positive_index
    if metadata.decision and pos is not None:
        threshold = float(metadata.decision.threshold)
        labels = np.where(probs[:, pos] >= threshold, pos, 1 - pos)
    else:
        threshold, labels = None, probs.argmax(axis=1)
    heatmaps = GradCam(model)(batch, labels)
    outputs = _overlay_paths(paths, options.output)
    results = []
    for path, p, label, heat, out in zip(paths, probs, labels, heatmaps, outputs):
        display = centre_square(read_display_image(path, channels))
        out.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(overlay(display, heat, size=min(OVERLAY_SIZE, display.shape[1]))).save(out)
        result = {"input": str(path), "label": names[label], "probabilities": {n: round(float(v), 4) for n, v in zip(names, p)},
                  "gradcam": str(out)}
        if threshold is not None:
            result |= {"probability": float(p[pos]), "positive_class": names[pos], "threshold": threshold}
            result["summary"] = (f"{path}: {names[label]}  p({names[pos]})={p[pos]:.3f}  threshold {threshold:.3f}  "
                                 f"Grad-CAM: {out}")
        else:
            result["probability"] = float(p[label])
            result["summary"] = f"{path}: {names[label]} ({p[label]:.3f})  Grad-CAM: {out}"
        results.append(result)
    return results


def _read(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    return read_medical_image(path, size, channels)


def _overlay_paths(paths: list[Path], output: Path | None) -> list[Path]:
    """--output FILE.png for one input, --output FOLDER for several; default: <stem>.gradcam.png here."""
    if output is None:
        return [Path(f"{p.stem}.gradcam.png") for p in paths]
    output = Path(output)
    if output.suffix.lower() == ".png" and len(paths) == 1:
        return [output]
    if output.suffix.lower() == ".png":
        raise DataError(f"--output {output} names one file but there are {len(paths)} inputs; give a folder")
    return [output / f"{p.stem}.gradcam.png" for p in paths]
