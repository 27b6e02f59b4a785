from ecoserve.proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Turn(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class PredictItem(_message.Message):
    __slots__ = ("prompt", "max_tokens", "messages", "prompt_tokens", "served_model")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    max_tokens: int
    messages: _containers.RepeatedCompositeFieldContainer[Turn]
    prompt_tokens: int
    served_model: str
    def __init__(self, prompt: _Optional[str] = ..., max_tokens: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., prompt_tokens: _Optional[int] = ..., served_model: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PredictItem]
    def __init__(self, items: _Optional[_Iterable[_Union[PredictItem, _Mapping]]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "model_version")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    model_version: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class RetrainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetrainResponse(_message.Message):
    __slots__ = ("swapped", "model_version", "completions", "message")
    SWAPPED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    swapped: bool
    model_version: str
    completions: int
    message: str
    def __init__(self, swapped: _Optional[bool] = ..., model_version: _Optional[str] = ..., completions: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LiveError(_message.Message):
    __slots__ = ("samples", "mae_tokens", "mean_relative_error", "upper_coverage")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MEAN_RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPPER_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    samples: int
    mae_tokens: float
    mean_relative_error: float
    upper_coverage: float
    def __init__(self, samples: _Optional[int] = ..., mae_tokens: _Optional[float] = ..., mean_relative_error: _Optional[float] = ..., upper_coverage: _Optional[float] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("served_model", "completions", "recent_under_prediction", "recent_mean_log_error", "drifts")
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    RECENT_UNDER_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    RECENT_MEAN_LOG_ERROR_FIELD_NUMBER: _ClassVar[int]
    DRIFTS_FIELD_NUMBER: _ClassVar[int]
    served_model: str
    completions: int
    recent_under_prediction: float
    recent_mean_log_error: float
    drifts: int
    def __init__(self, served_model: _Optional[str] = ..., completions: _Optional[int] = ..., recent_under_prediction: _Optional[float] = ..., recent_mean_log_error: _Optional[float] = ..., drifts: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_version", "quantile", "completions_seen", "live_error", "retrains", "last_retrain_error", "calibrations")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_SEEN_FIELD_NUMBER: _ClassVar[int]
    LIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRAINS_FIELD_NUMBER: _ClassVar[int]
    LAST_RETRAIN_ERROR_FIELD_NUMBER: _ClassVar[int]
    CALIBRATIONS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    quantile: float
    completions_seen: int
    live_error: LiveError
    retrains: int
    last_retrain_error: str
    calibrations: _containers.RepeatedCompositeFieldContainer[Calibration]
    def __init__(self, model_version: _Optional[str] = ..., quantile: _Optional[float] = ..., completions_seen: _Optional[int] = ..., live_error: _Optional[_Union[LiveError, _Mapping]] = ..., retrains: _Optional[int] = ..., last_retrain_error: _Optional[str] = ..., calibrations: _Optional[_Iterable[_Union[Calibration, _Mapping]]] = ...) -> None: ...
