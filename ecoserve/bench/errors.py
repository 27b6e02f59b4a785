"""The one exception that stops a benchmark before it starts (server unreachable, bad model or key)."""


class BenchError(Exception):
    """The run cannot start; the message says why. Failures during a run are counted instead."""
