"""Recommendation: MovieLens 100K (offline) or any ratings CSV -> biased MF / NeuMF / two-tower -> top-N titles."""
