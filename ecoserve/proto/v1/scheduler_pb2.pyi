from ecoserve.proto.v1 import common_pb2 as _common_pb2
from ecoserve.proto.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("prompt_token_ids", "params", "prediction", "slo", "priority")
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    params: _common_pb2.SamplingParams
    prediction: _common_pb2.Prediction
    slo: _common_pb2.Slo
    priority: int
    def __init__(self, prompt_token_ids: _Optional[_Iterable[int]] = ..., params: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., prediction: _Optional[_Union[_common_pb2.Prediction, _Mapping]] = ..., slo: _Optional[_Union[_common_pb2.Slo, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("request_id", "from_index")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    from_index: int
    def __init__(self, request_id: _Optional[int] = ..., from_index: _Optional[int] = ...) -> None: ...

class TokenEvent(_message.Message):
    __slots__ = ("request_id", "has_token", "token_id", "index", "finished", "finish_reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    has_token: bool
    token_id: int
    index: int
    finished: bool
    finish_reason: str
    def __init__(self, request_id: _Optional[int] = ..., has_token: _Optional[bool] = ..., token_id: _Optional[int] = ..., index: _Optional[int] = ..., finished: _Optional[bool] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    def __init__(self, cancelled: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("name", "engine", "model", "capacity_blocks", "used_blocks", "running", "waiting", "iterations", "preemptions", "timings", "cached_blocks", "prefix_query_blocks", "prefix_hit_blocks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    USED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_QUERY_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_HIT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    engine: str
    model: str
    capacity_blocks: int
    used_blocks: int
    running: int
    waiting: int
    iterations: int
    preemptions: int
    timings: IterationTimings
    cached_blocks: int
    prefix_query_blocks: int
    prefix_hit_blocks: int
    def __init__(self, name: _Optional[str] = ..., engine: _Optional[str] = ..., model: _Optional[str] = ..., capacity_blocks: _Optional[int] = ..., used_blocks: _Optional[int] = ..., running: _Optional[int] = ..., waiting: _Optional[int] = ..., iterations: _Optional[int] = ..., preemptions: _Optional[int] = ..., timings: _Optional[_Union[IterationTimings, _Mapping]] = ..., cached_blocks: _Optional[int] = ..., prefix_query_blocks: _Optional[int] = ..., prefix_hit_blocks: _Optional[int] = ...) -> None: ...

class IterationTimings(_message.Message):
    __slots__ = ("iterations", "wall_s", "compute_s", "policy_s", "round_trip_s", "persist_s", "window", "round_trip_p50_s", "round_trip_p99_s", "persist_p50_s", "persist_p99_s")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_S_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIP_S_FIELD_NUMBER: _ClassVar[int]
    PERSIST_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIP_P50_S_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIP_P99_S_FIELD_NUMBER: _ClassVar[int]
    PERSIST_P50_S_FIELD_NUMBER: _ClassVar[int]
    PERSIST_P99_S_FIELD_NUMBER: _ClassVar[int]
    iterations: int
    wall_s: float
    compute_s: float
    policy_s: float
    round_trip_s: float
    persist_s: float
    window: int
    round_trip_p50_s: float
    round_trip_p99_s: float
    persist_p50_s: float
    persist_p99_s: float
    def __init__(self, iterations: _Optional[int] = ..., wall_s: _Optional[float] = ..., compute_s: _Optional[float] = ..., policy_s: _Optional[float] = ..., round_trip_s: _Optional[float] = ..., persist_s: _Optional[float] = ..., window: _Optional[int] = ..., round_trip_p50_s: _Optional[float] = ..., round_trip_p99_s: _Optional[float] = ..., persist_p50_s: _Optional[float] = ..., persist_p99_s: _Optional[float] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("workers", "pending", "unfinished", "finished", "policy")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    pending: int
    unfinished: int
    finished: int
    policy: str
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ..., pending: _Optional[int] = ..., unfinished: _Optional[int] = ..., finished: _Optional[int] = ..., policy: _Optional[str] = ...) -> None: ...
