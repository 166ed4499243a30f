"""`deepsuite predict` for medical images: DICOM/PNG/JPEG in, probability + label + Grad-CAM PNG out.

Inputs outside the model's domain are flagged. A DICOM's Modality and BodyPartExamined (only those; nothing
that names a patient is read) are checked against the export's `metadata.domain`: a value the header states
and the model is not meant for gives a warning, or with policy `refuse` a DataError before any overlay is
written; a value the header omits is not held against the file (many chest radiographs omit the body part).
Every image, DICOM or not, gets the out-of-distribution score of ood.py against `metadata.ood.threshold`.
Exports from before these checks (no `domain` / `ood` in their metadata) answer as they did.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import to_numpy
from deepsuite.pipelines.medical_imaging import ood
from deepsuite.pipelines.medical_imaging.contract import ExpectedDomain, MedicalImagingMetadata, PredictOptions
from deepsuite.pipelines.medical_imaging.data import centre_square, read_display_image, read_medical_image
from deepsuite.pipelines.medical_imaging.dicom import is_dicom, read_domain

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
    headers = [read_domain(path) if is_dicom(path) else None for path in paths]
    mismatches = [domain_mismatch(header, metadata.domain) for header in headers]
    if metadata.domain is not None and metadata.domain.policy == "refuse":
        for path, mismatch in zip(paths, mismatches):
            if mismatch:  # before any answer or overlay
                raise DataError(f"{path}: {mismatch} (refused: domain.policy=refuse)")
    probs = to_numpy(model.predict(batch, verbose=0))
    scores, ood_threshold, ood_warning = _ood_scores(model, export, batch)
    pos = metadata.positive_index
    if metadata.decision and pos is not None:
        threshold = float(metadata.decision.threshold)
        labels = np.where(probs[:, pos] >= threshold, pos, 1 - pos)
    else:
        threshold, labels = None, probs.argmax(axis=1)
    heatmaps = GradCam(model)(batch, labels)
    outputs = _overlay_paths(paths, options.output)
    results = []
    for path, p, label, heat, out, header, mismatch, score in zip(paths, probs, labels, heatmaps, outputs, headers,
                                                                  mismatches, scores):
        display = centre_square(read_display_image(path, channels))
        out.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(overlay(display, heat, size=min(OVERLAY_SIZE, display.shape[1]))).save(out)
        result = {"input": str(path), "label": names[label], "probabilities": {n: round(float(v), 4) for n, v in zip(names, p)},
                  "gradcam": str(out)}
        if threshold is not None:
            result |= {"probability": float(p[pos]), "positive_class": names[pos], "threshold": threshold}
            line = f"{path}: {names[label]}  p({names[pos]})={p[pos]:.3f}  threshold {threshold:.3f}"
        else:
            result["probability"] = float(p[label])
            line = f"{path}: {names[label]} ({p[label]:.3f})"
        warnings = [mismatch] if mismatch else []
        if header is not None:
            result["dicom"] = {"modality": header[0], "body_part": header[1]}
        if score is not None:
            flagged = bool(score > ood_threshold)
            result |= {"ood_score": round(float(score), 4), "ood_threshold": round(ood_threshold, 4),
                       "out_of_distribution": flagged}
            if flagged:
                line += f"  OUT OF DISTRIBUTION (ood score {score:.1f} > {ood_threshold:.1f})"
                warnings.append(f"out of distribution: its features are farther from the training images' than "
                                f"the threshold set on validation (ood score {score:.1f} > {ood_threshold:.1f}); "
                                "the answer is not reliable")
        if ood_warning:
            warnings.append(ood_warning)
        result["warnings"] = warnings
        if mismatch:
            line += f"  WARNING: {mismatch}"
        result["summary"] = f"{line}  Grad-CAM: {out}"
        results.append(result)
    return results


def domain_mismatch(header: tuple[str | None, str | None] | None, domain: ExpectedDomain | None) -> str | None:
    """What is wrong with a DICOM's (Modality, BodyPartExamined) for `domain`, or None. Only a value the header
    states can mismatch: an omitted one is not held against the file (many chest radiographs omit the body
    part), but is named in the message when the other one mismatches."""
    if header is None or domain is None:
        return None
    modality, body_part = header
    wrong_modality = bool(domain.modalities and modality and modality not in domain.modalities)
    wrong_part = bool(domain.body_parts and body_part and body_part not in domain.body_parts)
    if not (wrong_modality or wrong_part):
        return None
    stated = f"Modality {modality or 'not stated'}, body part {body_part or 'not stated'}"
    expected = ", ".join(part for part in (
        f"Modality {' or '.join(domain.modalities)}" if domain.modalities else "",
        f"body part {' or '.join(domain.body_parts)}" if domain.body_parts else "") if part)
    return f"DICOM header says {stated}; this model is meant for {expected}"


def _ood_scores(model, export: Export, batch: np.ndarray) -> tuple[list, float | None, str | None]:
    """The images' out-of-distribution scores and the export's threshold; Nones for exports without a detector."""
    check = export.metadata.ood
    if check is None:
        return [None] * len(batch), None, None
    path = export.path(Path(check.file).name)  # beside model.keras, never elsewhere
    if not path.is_file():
        return [None] * len(batch), None, f"no out-of-distribution check: {check.file} is missing from the export"
    detector = ood.Detector.load(path)
    return list(detector.score(ood.feature_extractor(model)(batch))), float(check.threshold), None


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
