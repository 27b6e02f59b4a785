"""Response-length buckets: the one definition shared by the predictor and the scheduler's RL groups.

Edges grow geometrically because the cost of a wrong bucket is proportional to the length: a
request predicted to write 900 tokens and one predicted to write 1000 belong together, 10 and 100
do not.
"""

from bisect import bisect_right

# Upper edges (exclusive) of every bucket but the last, in generated tokens.
BUCKET_EDGES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048)
NUM_BUCKETS = len(BUCKET_EDGES) + 1


def rl_bucket(tokens: float) -> int:
    """Bucket index of a (predicted or actual) response length."""
    return bisect_right(BUCKET_EDGES, tokens)


def bucket_label(bucket: int) -> str:
    lo = 0 if bucket == 0 else BUCKET_EDGES[bucket - 1]
    return f"{lo}+" if bucket >= len(BUCKET_EDGES) else f"{lo}-{BUCKET_EDGES[bucket] - 1}"
