"""NBSVM-bi (Wang & Manning, ACL 2012, "Baselines and bigrams"), with scikit-learn.

Binarised unigram + bigram counts; the Naive Bayes log-count ratio r = log((p/|p|1) / (q/|q|1)) with
alpha = 1 scales every feature; an L2-regularised squared-hinge linear SVM (C = 1) is trained on the scaled
features and its weights are interpolated towards their mean magnitude, w' = (1 - beta) * mean|w| + beta * w,
with beta = 0.25: the paper's settings for sentence-level data (MR), nothing tuned here.
"""
from __future__ import annotations

import time

import numpy as np


def nbsvm_accuracy(train_texts: list[str], train_labels, test_texts: list[str], test_labels,
                   alpha: float = 1.0, c: float = 1.0, beta: float = 0.25) -> tuple[float, float]:
    """(test accuracy, seconds to fit and predict)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.svm import LinearSVC

    started = time.perf_counter()
    vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True, lowercase=True, token_pattern=r"(?u)\b\w+\b|[!?]")
    x_train, x_test = vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)
    y = np.asarray(train_labels).astype(int).ravel()
    p = alpha + np.asarray(x_train[y == 1].sum(axis=0)).ravel()
    q = alpha + np.asarray(x_train[y == 0].sum(axis=0)).ravel()
    r = np.log((p / p.sum()) / (q / q.sum()))
    svm = LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual=True, max_iter=10_000)
    svm.fit(x_train.multiply(r).tocsr(), y)
    w, b = svm.coef_.ravel(), svm.intercept_[0]
    w = (1 - beta) * np.abs(w).mean() + beta * w
    predicted = (x_test.multiply(r).tocsr() @ w + b) > 0
    accuracy = float((predicted == np.asarray(test_labels).astype(bool).ravel()).mean())
    return accuracy, time.perf_counter() - started
