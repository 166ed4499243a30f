"""A medical image folder streamed from disk: paths (`ImageFiles`) where the in-memory path has decoded arrays.

Before training, one threaded pass opens every file's header (PIL for PNG/JPEG; pydicom without the pixel
data for DICOM) and names every bad file at once, as the in-memory path names every file it cannot decode;
the same pass takes each file's patient id (the CSV, the DICOM PatientID read from that header, or the file
name), so the patient-grouped split (data.py) works on indices exactly as it does on arrays. The images are
decoded per batch by `read_medical_image`, the in-memory path's reader (centre crop, resize, DICOM display),
so a streamed batch has the pixels the arrays would have had. A DICOM whose pixel data is damaged past its
header is named when its batch decodes it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from deepsuite.common.data.image_files import ImageFiles, image_header_problem, unreadable
from deepsuite.common.errors import DataError
from deepsuite.common.workers import default_workers
from deepsuite.pipelines.medical_imaging.dicom import is_dicom, read_header


def streamed_splits(root: Path, layout: dict[str, dict[str, list[Path]]], names: list[str], size: tuple[int, int],
                    channels: int, reader: Callable, patient_of: Callable) -> dict[str, object]:
    """{split_x: ImageFiles, split_y, split_patient} for each split of `layout` ({split: {class: files}}),
    in the order the in-memory build reads them; one DataError naming every file with a bad header."""
    entries = [(split, names.index(name), path) for split, classes in layout.items()
               for name, files in classes.items() for path in files]
    threads = default_workers()
    with ThreadPoolExecutor(threads) as pool:
        facts = list(pool.map(lambda entry: file_facts(entry[2], patient_of), entries, chunksize=64))
    bad = [problem for problem, _ in facts if problem]
    if bad:
        raise unreadable(bad, f" in {root}")
    arrays: dict[str, object] = {}
    for split in layout:
        rows = [i for i, entry in enumerate(entries) if entry[0] == split]
        arrays[f"{split}_x"] = ImageFiles([entries[i][2] for i in rows], size, channels, reader)
        arrays[f"{split}_y"] = np.asarray([entries[i][1] for i in rows], np.int64)
        arrays[f"{split}_patient"] = np.asarray([facts[i][1] for i in rows], dtype=str)
    return arrays


def file_facts(path: Path, patient_of: Callable) -> tuple[str | None, str]:
    """(what is wrong with the file's header, or None; its patient id)."""
    if is_dicom(path):
        try:
            header = read_header(path)
        except DataError as exc:
            return str(exc), ""
        return None, patient_of(path, header)
    return image_header_problem(str(path)), patient_of(path)


def join(first, second):
    """Two splits' images one after the other: arrays, or ImageFiles of the same size and reader."""
    if isinstance(first, ImageFiles):
        return ImageFiles(np.concatenate([first.paths, second.paths]), first.size, first.channels, first.reader)
    return np.concatenate([first, second])
