"""KV admission by forecast: admit a request while the KV the batch will hold over the coming
iterations stays within the cache at a chosen overflow probability (DESIGN section 4, item 3).

A request's remaining length is uncertain. `LengthForecast` turns a point prediction into a
distribution with the predictor's measured errors (ratios actual / predicted); conditioned on
what the request has generated so far, it gives the chance that it is still running h tokens
from now. A running request then holds its tokens plus h with that chance, and nothing once
it has finished. Summed over the batch (independent requests), the occupancy h steps ahead has
a mean and a variance; admission asks that mean + z * sd fits the cache at every horizon, z the
normal quantile of the overflow probability. With exact predictions (ratios [1]) this is the
fixed reservation of the predicted length; with wide errors it admits more than a reservation of
the upper quantile would, and the rare overflow is absorbed by a preemption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ecoserve.core.request import Request

# Decode steps ahead at which occupancy is bounded: every 16 up to 256, then steps of about 1/8.
HORIZONS = np.array(
    [*range(0, 257, 16), 288, 320, 352, 384, 448, 512, 576, 640, 768, 896, 1024, 1152, 1280, 1536, 1792,
     2048, 2304, 2560, 3072, 3584, 4096, 4608, 5120, 6144, 7168, 8192], dtype=np.float64,
)


@dataclass(frozen=True, eq=False)
class LengthForecast:
    """Remaining-length distribution around a point prediction: actual = point * ratio, ratio drawn
    from the predictor's measured `ratios` (actual / predicted, e.g. its held-out test errors)."""

    ratios: np.ndarray = field(default_factory=lambda: np.ones(1))
    # A request already past every ratio's length is taken to run on for this share of its
    # prediction (the overrun extension's share), after which it is expected to end.
    overrun_share: float = 0.25

    def __post_init__(self) -> None:
        ratios = np.sort(np.asarray(self.ratios, dtype=np.float64))
        if len(ratios) == 0 or not (ratios > 0).all():
            raise ValueError("a length forecast needs positive actual/predicted ratios")
        object.__setattr__(self, "ratios", ratios)

    @classmethod
    def exact(cls) -> LengthForecast:
        return cls(np.ones(1))

    def _beyond(self, x: np.ndarray) -> np.ndarray:
        """P(ratio > x)."""
        return 1.0 - np.searchsorted(self.ratios, x, side="right") / len(self.ratios)

    def running(self, point: np.ndarray, generated: np.ndarray, horizons: np.ndarray = HORIZONS) -> np.ndarray:
        """[request, horizon]: P(still generating after `h` more tokens | generated so far)."""
        point = np.maximum(np.asarray(point, dtype=np.float64), 1.0)[:, None]
        done = np.asarray(generated, dtype=np.float64)[:, None]
        alive = self._beyond(done / point)
        later = self._beyond((done + horizons[None, :]) / point)
        past_all = (horizons[None, :] < self.overrun_share * point).astype(np.float64)
        return np.where(alive > 0, later / np.maximum(alive, 1e-12), past_all)


@dataclass(slots=True)
class KvForecast:
    """Occupancy of one worker's KV over HORIZONS, for the requests holding or about to hold it."""

    lengths: LengthForecast
    capacity_tokens: int
    block_size: int
    z: float
    point_of: Callable[[Request], int]  # the length a request is expected to reach
    mean: np.ndarray = field(default_factory=lambda: np.zeros(len(HORIZONS) - 1))  # per interval
    var: np.ndarray = field(default_factory=lambda: np.zeros(len(HORIZONS) - 1))

    @classmethod
    def of(
        cls, holders: Iterable[Request], lengths: LengthForecast, capacity_blocks: int, block_size: int,
        overflow_probability: float, point_of: Callable[[Request], int],
    ) -> KvForecast:
        """The forecast of `holders`: the requests running, prefilling or waiting to join."""
        z = NormalDist().inv_cdf(1.0 - overflow_probability)
        forecast = cls(lengths, capacity_blocks * block_size, block_size, z, point_of)
        forecast._add(list(holders))
        return forecast

    def _terms(self, reqs: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the KV the requests hold between each horizon and the next.

        Between two horizons a request grows and may end; taking it as alive from the earlier one
        and as large as at the later one bounds its KV over the whole interval, so no peak falls
        between the points checked (with exact lengths the bound is never exceeded).
        """
        pts = np.array([self.point_of(r) for r in reqs], dtype=np.float64)
        alive = self.lengths.running(pts, np.array([r.generated for r in reqs], dtype=np.float64))[:, :-1]
        tokens = np.array([r.num_tokens for r in reqs], dtype=np.float64)[:, None] + HORIZONS[None, 1:]
        held = np.ceil(tokens / self.block_size) * self.block_size  # whole blocks
        return (alive * held).sum(axis=0), (alive * (1.0 - alive) * held**2).sum(axis=0)

    def _add(self, reqs: Sequence[Request]) -> None:
        if reqs:
            mean, var = self._terms(reqs)
            self.mean += mean
            self.var += var

    def admits(self, req: Request) -> bool:
        """Whether `req` joining keeps mean + z * sd within the cache at every horizon."""
        mean, var = self._terms([req])
        return bool(np.all(self.mean + mean + self.z * np.sqrt(self.var + var) <= self.capacity_tokens))

    def add(self, req: Request) -> None:
        self._add([req])
