"""Result tables for a terminal or a log file: they fit 80 columns, never cut a number, and
carry one unit per column, named in its header. Only the name column folds when space is short.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich import box
from rich.table import Table

from ecoserve.metrics.capacity import CapacityResult
from ecoserve.metrics.summary import RunSummary

WIDTH = 80  # what logs and an 80-column terminal show


def _num(value: float, digits: int) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


# (header, cell) for each column of runs_table; latency units chosen so values read unscaled.
_RUN_COLUMNS: list[tuple[str, Callable[[RunSummary], str]]] = [
    ("rate\nreq/s", lambda r: f"{r.rate:.2f}" if r.rate >= 0.1 else f"{r.rate:.3g}"),
    ("served\nreq/s", lambda r: _num(r.throughput_rps, 2)),
    ("TTFT\np99 s", lambda r: _num(r.ttft_p99, 2)),
    ("TPOT\np99 ms", lambda r: _num(r.tpot_p99 * 1e3, 0)),
    ("ITL\np99 ms", lambda r: _num(r.itl_p99 * 1e3, 0)),
    ("E2E\np99 s", lambda r: _num(r.e2e_p99, 1)),
    ("SLO\n%", lambda r: _num(100 * r.slo_attainment, 1)),
    ("pre-\nempt", lambda r: str(r.preemptions)),
    ("re-\nject", lambda r: str(r.rejected)),
    ("re-\nfuse", lambda r: str(r.refused)),
]


def _table(title: str, first: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """Columns as wide as their widest cell; the first (a name) gets what is left of WIDTH."""
    widths = [
        max([len(line) for line in header.split("\n")] + [len(row[i + 1]) for row in rows])
        for i, header in enumerate(headers)
    ]
    room = WIDTH - sum(w + 1 for w in widths)  # each column and the separator before it
    longest = max([len(first)] + [len(row[0]) for row in rows])
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, show_edge=False,
                  title_justify="left")
    table.add_column(first, overflow="fold", width=max(8, min(longest, room)))
    for header, width in zip(headers, widths):
        table.add_column(header, justify="right", no_wrap=True, width=width)
    for row in rows:
        table.add_row(*row)
    return table


def runs_table(results: Sequence[RunSummary], title: str = "simulation") -> Table:
    """One row per run: policy, rate and the latency, SLO and KV-pressure figures that matter."""
    rows = [[r.policy, *(cell(r) for _, cell in _RUN_COLUMNS)] for r in results]
    return _table(title, "policy", [h for h, _ in _RUN_COLUMNS], rows)


def capacity_table(found: dict[str, CapacityResult], limit: float, title: str = "capacity") -> Table:
    """Capacity per policy with its bracket and share of the limit; bounds are marked ('>=', '<'),
    and capacity_notes says what they mean."""
    rows = []
    for policy, result in found.items():
        low, high = result.bracket
        rows.append([
            policy, result.label(), f"{low:.2f}", "none" if high is None else f"{high:.2f}",
            f"{100 * result.capacity / limit:.0f}",
        ])
    headers = ["capacity\nreq/s", "met at\nreq/s", "failed at\nreq/s", "of limit\n%"]
    return _table(f"{title} (limit {limit:.2f} req/s)", "policy", headers, rows)
