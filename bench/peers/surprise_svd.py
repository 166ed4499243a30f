"""Surprise's SVD and SVD++ (scikit-surprise, Hug 2020) on our own rating split: the peers of the RMSE bench.

Both keep Surprise's defaults (SVD: 100 factors, 20 epochs, lr 0.005, reg 0.02; SVD++: 20 factors, 20 epochs,
lr 0.007, reg 0.02), the settings behind Surprise's published ML-100K table (5-fold: SVD 0.934, SVD++ 0.919).
They train on our training and validation ratings together (the whole 80 % side of the 80/20 split: they do
not early-stop, so validation would otherwise go unused) and are scored on our test ratings; predictions are
clipped to the rating range as Surprise does.
"""
from __future__ import annotations

import time

import numpy as np


def surprise_rmse(train_users, train_items, train_ratings, test_users, test_items, test_ratings,
                  rating_range: tuple[float, float], seed: int) -> dict[str, tuple[float, float]]:
    """{"SVD": (test RMSE, seconds), "SVD++": (...)}: fit on the train triples, predict the test triples."""
    import pandas as pd
    from surprise import SVD, Dataset, Reader, SVDpp

    frame = pd.DataFrame({"user": np.asarray(train_users).astype(str), "item": np.asarray(train_items).astype(str),
                          "rating": np.asarray(train_ratings, dtype=float)})
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=rating_range)).build_full_trainset()
    test = list(zip(np.asarray(test_users).astype(str), np.asarray(test_items).astype(str),
                    np.asarray(test_ratings, dtype=float)))
    out = {}
    for name, algorithm in (("SVD", SVD(random_state=seed)), ("SVD++", SVDpp(random_state=seed))):
        started = time.perf_counter()
        algorithm.fit(trainset)
        predicted = np.array([algorithm.predict(u, i, r_ui=r).est for u, i, r in test])
        seconds = time.perf_counter() - started
        truth = np.array([r for _, _, r in test])
        out[name] = (float(np.sqrt(np.mean((predicted - truth) ** 2))), seconds)
    return out
