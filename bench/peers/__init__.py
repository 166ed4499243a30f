"""The peers the benches measure beside our pipelines, in the same run on the same split (issue 26).

Bench-only: they need the `[bench]` extra (scikit-learn, scikit-surprise, bm3d; bm3d is licensed for
non-commercial use only) and are never imported by the suite.
"""
