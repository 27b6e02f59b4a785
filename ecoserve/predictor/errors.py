"""The one exception the predictor raises for bad inputs it cannot recover from."""


class PredictorError(Exception):
    """A model file, tokenizer or data set that cannot be used, with a message saying why."""
