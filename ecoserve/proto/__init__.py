"""Generated gRPC stubs of protos/ecoserve/v1 (see build.py); rebuilt on import when stale.

`REBUILT_AT_IMPORT` records that a rebuild happened, so the tests can fail on stale committed stubs
even though a running process heals itself.
"""

from ecoserve.proto import build as _build

REBUILT_AT_IMPORT = _build.is_stale()
if REBUILT_AT_IMPORT:
    _build.build()

from ecoserve.proto.v1 import (  # noqa: E402
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
)

__all__ = ["common_pb2", "gateway_pb2", "gateway_pb2_grpc", "predictor_pb2", "predictor_pb2_grpc",
           "scheduler_pb2", "scheduler_pb2_grpc", "worker_pb2"]
