"""The worker service: executes the scheduler's BatchPlans on an engine."""
