"""EcoServe: an LLM-serving control plane that fills GPU compute and KV-cache memory every iteration."""

__version__ = "0.1.0"
