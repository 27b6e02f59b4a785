"""Chats as the predictor reads them: record formats, the JSONL reader, --data/--add-data, chat features."""

import json

import numpy as np
import pytest

from ecoserve.predictor.chat import Message, as_chat, conversation_key, prompt_key, render
from ecoserve.predictor.chat_features import (
    CHAT_SCALARS,
    WINDOW_HEAD,
    WINDOW_TAIL,
    ChatFeatureExtractor,
    chat_parts,
)
from ecoserve.predictor.datasets import (
    DEFAULT_TRAIN_SETS,
    choose_sets,
    load_labeled,
    load_samples,
    split_indices,
)
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.features import FeatureConfig
from ecoserve.predictor.tokenizer import load_tokenizer


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_mt_bench_record_gives_one_sample_per_turn_with_the_history(tmp_path):
    path = _write(tmp_path / "mt.jsonl", [
        {"question_id": 1, "turns": ["Write a poem.", "Now shorter."], "answers": ["Roses " * 50, "Roses."],
         "model": "m1"},
    ])
    first, second = load_samples(path)
    assert first.messages == (Message("user", "Write a poem."),) and first.generator == "m1"
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]
    assert second.messages[1].content == "Roses " * 50 and second.response == "Roses."
    assert conversation_key(first.messages) == conversation_key(second.messages)  # split together


def test_chat_messages_arena_and_sharegpt_formats(tmp_path):
    path = _write(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
                      {"role": "assistant", "content": "Bye!"}], "model": "a"},
        {"conversation_a": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A1"}],
         "conversation_b": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A2 longer"}],
         "model_a": "x", "model_b": "y"},
        {"conversations": [{"from": "human", "value": "U1"}, {"from": "gpt", "value": "G1"},
                           {"from": "human", "value": "U2"}, {"from": "gpt", "value": "G2"}]},
        {"messages": [{"role": "user", "content": "logged"}], "response_tokens": 12, "model": "served"},
    ])
    s = load_samples(path)
    assert [x.response for x in s] == ["Hello", "Bye!", "A1", "A2 longer", "G1", "G2", None]
    assert [x.generator for x in s] == ["a", "a", "x", "y", "", "", "served"]
    assert s[1].messages[0] == Message("system", "Be brief.") and len(s[1].messages) == 4
    assert s[-1].response_tokens == 12
    data = load_labeled([path], load_tokenizer())
    assert len(data) == 7 and data.groups[4] == "chats.jsonl"  # no generator: the source stands in


def test_jsonl_keeps_u2028_inside_strings_and_names_the_bad_line(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [json.dumps({"prompt": "a\u2028b", "response_tokens": 3}, ensure_ascii=False),
            json.dumps({"prompt": "c\u2029d", "response_tokens": 4}, ensure_ascii=False)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert [s.prompt for s in load_samples(str(path))] == ["a\u2028b", "c\u2029d"]
    path.write_text("\n".join(rows + ["", "{broken"]), encoding="utf-8")
    with pytest.raises(PredictorError, match="line 4"):
        load_samples(str(path))


def test_data_replaces_and_add_data_adds_and_both_say_so():
    sets, how = choose_sets((), ())
    assert sets == list(DEFAULT_TRAIN_SETS) and "default" in how
    sets, how = choose_sets(("mine.jsonl",), ())
    assert sets == ["mine.jsonl"] and "replaces" in how
    sets, how = choose_sets((), ("mine.jsonl",))
    assert sets == [*DEFAULT_TRAIN_SETS, "mine.jsonl"] and "plus --add-data" in how
    sets, _ = choose_sets(("a",), ("b", "a"))
    assert sets == ["a", "b"]


def test_split_keeps_every_turn_of_a_conversation_on_one_side():
    chats = []
    for i in range(400):
        first = Message("user", f"question {i}")
        chats += [(first,), (first, Message("assistant", "x"), Message("user", f"follow-up {i}"))]
    split = split_indices(chats, 0)
    side = {}
    for name, idx in split.items():
        for j in idx:
            side.setdefault(j // 2, set()).add(name)
    assert all(len(v) == 1 for v in side.values())
    assert prompt_key("question 3") == prompt_key(chats[7])


def test_chat_features_read_history_lengths_and_stay_bounded():
    short = (Message("user", "Write a story."),)
    chat = (
        Message("system", "You are terse."),
        Message("user", "Write a story."),
        Message("assistant", "w " * 900),
        Message("user", "Another, please."),
    )
    f = ChatFeatureExtractor(FeatureConfig(16, 16, 8)).extract([short, chat], [4, 900], [None, None]).dense
    names = FeatureConfig(16, 16, 8).names + list(CHAT_SCALARS)
    col = {n: f[:, names.index(n)] for n in CHAT_SCALARS}
    assert col["messages"].tolist() == [1, 4] and col["assistant_turns"].tolist() == [0, 1]
    assert np.isnan(col["log_last_reply_chars"][0]) and col["log_last_reply_chars"][1] == pytest.approx(np.log1p(1800))
    assert col["log_system_chars"][1] == pytest.approx(np.log1p(len("You are terse.")))
    long_turn = "start " + "filler " * 3000 + " end?"
    part = chat_parts(as_chat([{"role": "user", "content": long_turn}])).last_turn
    assert len(part) == WINDOW_HEAD + WINDOW_TAIL + 1 and part.startswith("start") and part.endswith("end?")


def test_render_and_as_chat_ignore_tool_roles():
    chat = as_chat([{"role": "user", "content": "a"}, {"role": "tool", "content": "{}"},
                    {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
    assert [m.role for m in chat] == ["user", "assistant", "user"]
    assert render(chat) == "a\n\nb\n\nc" and render(as_chat("only")) == "only"
