"""Configuration by environment: every service flag `--some-flag` can be set as `ECOSERVE_SOME_FLAG`.

One rule for every service, applied where each service parses its flags, so compose files and
Kubernetes manifests configure services without command lines. A flag on the command line wins
over the environment; list flags take comma-separated values; switches take 1/true/yes/on.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

PREFIX = "ECOSERVE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(option: str) -> str:
    """`--redis-url` -> `ECOSERVE_REDIS_URL`."""
    return PREFIX + option.lstrip("-").replace("-", "_").upper()


def apply_env(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Make each long option default to its environment variable, and name the variable in --help."""
    environ = os.environ if environ is None else environ
    for action in parser._actions:  # argparse has no public iterator over its options
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or isinstance(action, argparse._HelpAction):
            continue
        name = env_name(longs[0])
        action.help = f"{action.help or ''} [env {name}]".strip()
        if name not in environ:
            continue
        try:
            action.default = _convert(action, environ[name])
        except ValueError as exc:
            parser.error(f"{name}={environ[name]!r}: {exc}")
        action.required = False


def _convert(action: argparse.Action, raw: str) -> object:
    if isinstance(action, argparse._StoreTrueAction):
        value = raw.strip().lower()
        if value not in _TRUE | _FALSE:
            raise ValueError("expected 1/true/yes/on or 0/false/no/off")
        return value in _TRUE
    convert = action.type or str
    if isinstance(action, argparse._AppendAction):
        return [convert(part.strip()) for part in raw.split(",") if part.strip()]
    value = convert(raw)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"choose from {', '.join(map(str, action.choices))}")
    return value


def port(raw: str) -> int:
    """argparse type of a TCP port flag: 0-65535 (0: the system picks one; for --metrics-port, none)."""
    value = int(raw)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value
