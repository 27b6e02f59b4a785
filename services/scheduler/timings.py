"""Where a worker session's iteration time goes, so the control plane's cost can be measured live.

The simulator charges an iteration only the cost model's compute time. The live system adds the
policy, the plan's trip to the worker and back, and the Redis pipeline (which overlaps the next
iteration, so it costs wall time only when it outlasts the worker's compute); these are recorded
per iteration and served in Stats, totals since the worker connected and percentiles over a window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ecoserve.proto import scheduler_pb2


@dataclass(slots=True)
class IterationTimer:
    window: int = 4096
    iterations: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0
    policy_s: float = 0.0
    round_trip_s: float = 0.0
    persist_s: float = 0.0
    _round_trips: deque[float] = field(init=False)
    _persists: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self._round_trips = deque(maxlen=self.window)
        self._persists = deque(maxlen=self.window)

    def iteration(self, *, wall: float, compute: float, policy: float, round_trip: float) -> None:
        self.iterations += 1
        self.wall_s += wall
        self.compute_s += compute
        self.policy_s += policy
        self.round_trip_s += round_trip
        self._round_trips.append(round_trip)

    def flush(self, seconds: float) -> None:
        """An iteration's Redis pipeline, which runs while the worker computes the next one."""
        self.persist_s += seconds
        self._persists.append(seconds)

    def to_proto(self) -> scheduler_pb2.IterationTimings:
        msg = scheduler_pb2.IterationTimings(
            iterations=self.iterations, wall_s=self.wall_s, compute_s=self.compute_s, policy_s=self.policy_s,
            round_trip_s=self.round_trip_s, persist_s=self.persist_s, window=len(self._round_trips))
        if self._round_trips:
            msg.round_trip_p50_s, msg.round_trip_p99_s = np.percentile(self._round_trips, [50, 99])
        if self._persists:
            msg.persist_p50_s, msg.persist_p99_s = np.percentile(self._persists, [50, 99])
        return msg
