"""The response-length predictor service."""
