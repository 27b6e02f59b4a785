"""Response-length predictor: chat features, an XGBoost ranking head, a scale head calibrated
online per served model (point and reservation), RL buckets.

Public API (imported lazily so that `ecoserve --help` does not load XGBoost):
RLPredictor, Completion, PredictorError, ErrorModel.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RLPredictor": "ecoserve.predictor.predictor",
    "Completion": "ecoserve.predictor.predictor",
    "PredictorError": "ecoserve.predictor.errors",
    "ErrorModel": "ecoserve.predictor.error_model",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
