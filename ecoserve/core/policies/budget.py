"""The time-sized iteration budget: how many prefill tokens still fit in one step.

Each chunk is priced by the cost model on top of everything the step already holds, with the
attention over its cached prefix, so a chunk behind a long prefix gets fewer tokens. EcoServe and
`vllm-budget` share this object, so comparing them isolates the other mechanisms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.plan import BatchPlan


@dataclass(frozen=True, slots=True)
class IterationBudget:
    cost: CostModel
    target: float  # seconds one iteration may take
    idle_floor: int = 256  # tokens a step with nothing else in it always prefills

    def chunk(self, plan: BatchPlan, prefix: int, want: int, decodes: tuple[int, int] = (0, 0)) -> int:
        """The largest chunk, up to `want` tokens on `prefix` computed ones, that keeps the step
        within the target; `decodes` = (count, summed context) of decodes the step will add.

        A step that holds nothing else gets at least min(want, idle_floor) tokens, so a prompt
        whose smallest chunk overruns the target still makes progress.
        """
        if want <= 0:
            return 0
        num_decodes = plan.num_decodes + decodes[0]
        context = plan.decode_context + decodes[1]

        def time(n: int) -> float:
            return self.cost.iteration_time(
                plan.num_prefills + 1,
                plan.prefill_tokens + n,
                plan.prefill_sq + n * n,
                plan.prefill_cross + n * prefix,
                num_decodes,
                context,
            )

        if time(want) <= self.target:
            return want
        lo, hi = 0, want  # time(lo) fits (or lo == 0), time(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if time(mid) <= self.target:
                lo = mid
            else:
                hi = mid
        idle = not plan and num_decodes == 0
        return max(lo, min(want, self.idle_floor) if idle else 0)
