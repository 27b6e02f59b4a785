"""`ecoserve predictor ...`: train, evaluate and query the response-length predictor."""

import click


@click.group("predictor")
def predictor() -> None:
    """Response-length predictor: train, evaluate, predict."""
