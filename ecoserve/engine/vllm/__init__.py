"""The `vllm` engine: vLLM's EngineCore in process, executing the central scheduler's batch plans.

vLLM's model runner, kernels and KV cache manager do the work; EcoServe's scheduler decides every
batch. Importing this package does not import vLLM: `engine.VllmEngine` does (docs/engine.md).
"""
