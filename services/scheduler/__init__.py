"""The scheduler service: runs the core policies per worker iteration, keeps state in Redis."""
