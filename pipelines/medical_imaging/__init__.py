"""Medical imaging: chest X-ray pneumonia detection (MedMNIST, Kermany folders, DICOM) with clinical metrics."""
