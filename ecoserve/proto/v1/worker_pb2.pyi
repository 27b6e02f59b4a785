from ecoserve.proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    result: IterationResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., result: _Optional[_Union[IterationResult, _Mapping]] = ...) -> None: ...

class SchedulerMessage(_message.Message):
    __slots__ = ("welcome", "plan")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    plan: BatchPlan
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., plan: _Optional[_Union[BatchPlan, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("name", "capacity_blocks", "block_size", "model", "engine")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity_blocks: int
    block_size: int
    model: str
    engine: str
    def __init__(self, name: _Optional[str] = ..., capacity_blocks: _Optional[int] = ..., block_size: _Optional[int] = ..., model: _Optional[str] = ..., engine: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ...) -> None: ...

class BatchPlan(_message.Message):
    __slots__ = ("iteration", "items", "release", "reset")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    items: _containers.RepeatedCompositeFieldContainer[PlanItem]
    release: _containers.RepeatedScalarFieldContainer[int]
    reset: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, iteration: _Optional[int] = ..., items: _Optional[_Iterable[_Union[PlanItem, _Mapping]]] = ..., release: _Optional[_Iterable[int]] = ..., reset: _Optional[_Iterable[int]] = ...) -> None: ...

class PlanItem(_message.Message):
    __slots__ = ("request_id", "token_ids", "start_pos", "sample", "params")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    START_POS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    start_pos: int
    sample: bool
    params: _common_pb2.SamplingParams
    def __init__(self, request_id: _Optional[int] = ..., token_ids: _Optional[_Iterable[int]] = ..., start_pos: _Optional[int] = ..., sample: _Optional[bool] = ..., params: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ...) -> None: ...

class IterationResult(_message.Message):
    __slots__ = ("iteration", "outputs", "forward_s", "sample_s")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_S_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    outputs: _containers.RepeatedCompositeFieldContainer[ItemOutput]
    forward_s: float
    sample_s: float
    def __init__(self, iteration: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[ItemOutput, _Mapping]]] = ..., forward_s: _Optional[float] = ..., sample_s: _Optional[float] = ...) -> None: ...

class ItemOutput(_message.Message):
    __slots__ = ("request_id", "has_token", "token_id", "finished", "finish_reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    has_token: bool
    token_id: int
    finished: bool
    finish_reason: str
    def __init__(self, request_id: _Optional[int] = ..., has_token: _Optional[bool] = ..., token_id: _Optional[int] = ..., finished: _Optional[bool] = ..., finish_reason: _Optional[str] = ...) -> None: ...
