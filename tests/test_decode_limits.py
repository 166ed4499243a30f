"""Decompression bombs are refused from their headers, before any decoding, under a tight memory limit.

A 70 KB deflated DICOM declaring 6000 x 6000 16-bit pixels, and a tiny 1-bit PNG of 10000 x 10000 (100 Mpx:
above Pillow's warning threshold, below its error threshold, so Pillow itself would decode it), are read
by the suite's image readers in a subprocess whose address space is capped (RLIMIT_AS): each is refused
with one clear DataError instead of a MemoryError or hundreds of MB.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from tests.support.cli import REPO

LIMIT_BYTES = 700 * 2**20
READER = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES}))
from deepsuite.common.data.images import read_image
from deepsuite.common.errors import DataError
from deepsuite.pipelines.medical_imaging.dicom import read_dicom
try:
    image = (read_dicom if sys.argv[1].endswith(".dcm") else read_image)(sys.argv[1])
    print("decoded", image.shape)
except DataError as exc:
    print("refused:", exc)
"""


def read_capped(path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=300,
                          env=env)


def deflated_dicom_bomb(path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = "OT", 6000, 6000, 1
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = np.zeros((6000, 6000), np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_a_deflated_dicom_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.dcm"
    deflated_dicom_bomb(bomb)
    assert bomb.stat().st_size < 200_000
    result = read_capped(bomb)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"refused: {bomb}: DICOM image too large to decode (1 frame(s) of 6000 x 6000")


def test_a_png_between_pillows_warning_and_error_thresholds_is_refused(tmp_path):
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    big = tmp_path / "big.png"
    Image.new("1", (10_000, 10_000)).save(big)  # a few KB on disk
    result = read_capped(big)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"refused: {big}: image too large (10000x10000 pixels)")


def test_an_ordinary_image_still_reads_under_the_same_limit(tmp_path):
    ordinary = tmp_path / "ordinary.png"
    Image.new("L", (512, 512), 128).save(ordinary)
    assert read_capped(ordinary).stdout.strip() == "decoded (512, 512, 1)"
