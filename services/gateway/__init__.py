"""The gateway: gRPC Generate and the OpenAI-compatible HTTP API in front of the scheduler."""
