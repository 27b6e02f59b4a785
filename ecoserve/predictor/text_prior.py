"""Linear text prior: ridge regression of log response length on hashed n-gram counts.

Trees see hashed words through a few hundred folded buckets, where unrelated words collide; a
ridge model over 65k hash slots keeps them apart and gives the trees one strong feature (its
score). Trained out-of-fold on the training split so the trees never see a score fitted to their
own targets. Weights are kept as float16: that is what is saved, so a loaded model predicts
exactly what the trained one did.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sps

from ecoserve.predictor.features import PRIOR_DIM


def _csr(ngrams: list[list[int]]) -> sps.csr_matrix:
    """Count matrix: repeated slots in a row add up."""
    indptr = np.zeros(len(ngrams) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(g) for g in ngrams])
    idx = np.fromiter((h for g in ngrams for h in g), dtype=np.int64, count=int(indptr[-1]))
    x = sps.csr_matrix((np.ones(len(idx)), idx, indptr), shape=(len(ngrams), PRIOR_DIM))
    x.sum_duplicates()
    return x


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # Not ndarray.dot: BLAS threads spin against each other on a busy 2-core box (7 ms a call).
    return float(np.multiply(a, b).sum())


def ridge(x: sps.csr_matrix, y: np.ndarray, damp: float, iters: int = 500, tol: float = 1e-6) -> np.ndarray:
    """argmin_w |x w - y|^2 + damp^2 |w|^2 by conjugate gradients on the normal equations (CGLS)."""
    xt = x.T.tocsr()
    lam = damp * damp
    w = np.zeros(x.shape[1])
    r = y.astype(float).copy()
    s = xt @ r
    p = s.copy()
    gamma = gamma0 = _dot(s, s)
    for _ in range(iters):
        if gamma <= tol * tol * gamma0:
            break
        q = x @ p
        alpha = gamma / (_dot(q, q) + lam * _dot(p, p))
        w += alpha * p
        r -= alpha * q
        s = xt @ r - lam * w
        gamma, previous = _dot(s, s), gamma
        p = s + (gamma / previous) * p
    return w


@dataclass(frozen=True)
class TextPrior:
    bias: float
    weights: np.ndarray  # float16, PRIOR_DIM

    @staticmethod
    def fit(ngrams: list[list[int]], y: np.ndarray, damp: float) -> TextPrior:
        bias = float(np.mean(y))
        w = ridge(_csr(ngrams), y - bias, damp)
        return TextPrior(bias=bias, weights=w.astype(np.float16))

    @staticmethod
    def out_of_fold(
        ngrams: list[list[int]], y: np.ndarray, damp: float, folds: int, seed: int
    ) -> np.ndarray:
        """Each row's score from a prior fitted without that row's fold."""
        fold = np.random.default_rng(seed).integers(0, folds, len(y))
        x = _csr(ngrams)
        out = np.empty(len(y))
        for k in range(folds):
            held = fold == k
            if not held.any() or held.all():
                continue
            bias = float(np.mean(y[~held]))
            w = ridge(x[~held], y[~held] - bias, damp).astype(np.float16)
            out[held] = x[held] @ w.astype(np.float64) + bias
        if (fold == fold[0]).all():  # one fold only: nothing to hold out against
            out[:] = float(np.mean(y))
        return out

    def score(self, ngrams: list[list[int]]) -> np.ndarray:
        w = self._weights_list
        return np.array([sum(map(w.__getitem__, g)) for g in ngrams]) + self.bias

    @cached_property
    def _weights_list(self) -> list[float]:
        """Python floats: indexing a list beats numpy for the ~40 slots of one prompt."""
        return self.weights.astype(np.float64).tolist()

    def to_dict(self) -> dict:
        return {
            "bias": self.bias,
            "weights_f16": base64.b64encode(self.weights.astype("<f2").tobytes()).decode(),
        }

    @staticmethod
    def from_dict(d: dict) -> TextPrior:
        w = np.frombuffer(base64.b64decode(d["weights_f16"]), dtype="<f2").astype(np.float16)
        if w.shape != (PRIOR_DIM,):
            raise ValueError(f"text prior has {w.size} weights, expected {PRIOR_DIM}")
        return TextPrior(bias=float(d["bias"]), weights=w)
