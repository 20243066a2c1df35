"""Serving a subword model over real HTTP (127.0.0.1, a free port) with the openai client:
max_tokens and usage count BPE tokens, streamed text never holds half a character, logprobs
carry each token's bytes, stop strings spanning tokens never leak, and text no tokenizer can
encode (a lone surrogate) is refused in words on a connection that stays usable."""

import json

import openai
import pytest

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig
from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.model.generation import stream_tokens
from playground.engine.training.trainer import Trainer
from playground.serve.api import Served, Settings

from .conftest import LogRecords, connect, running, strict_json

PROMPT = "café 🎉 The "


@pytest.fixture(scope="module")
def bpe_model():
    corpus = build_corpus("fable", builtin_text("fable") * 2, 0.1, 16, kind="bpe", vocab_size=300)
    cfg = ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=16,
                      position="rope")
    trainer = Trainer(cfg, TrainConfig(batch_size=16, max_steps=80, learning_rate=1e-2, min_lr=1e-2,
                                       eval_interval=1000, sample_chars=0, threads=1), corpus)
    list(trainer.run())
    return trainer.model.eval(), corpus.tokenizer


@pytest.fixture(scope="module")
def server(bpe_model):
    model, tok = bpe_model
    with running(Served(Settings(model_name="fable")), model, tok, start_char="T") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=30)


def ours(bpe_model, tokens: int, **settings) -> str:
    model, tok = bpe_model
    cfg = SampleConfig(max_new_tokens=tokens, **settings)
    return "".join(t.text for t in stream_tokens(model, tok, PROMPT, cfg, "T"))


def test_max_tokens_and_usage_count_subword_tokens(client, bpe_model):
    _, tok = bpe_model
    reply = client.completions.create(model="fable", prompt=PROMPT, max_tokens=12, temperature=0.9, seed=5)
    assert reply.usage.completion_tokens == 12 and reply.usage.prompt_tokens == len(tok.encode(PROMPT))
    assert reply.choices[0].text == ours(bpe_model, 12, temperature=0.9, seed=5)
    assert len(reply.choices[0].text) > 12  # tokens of several characters


def test_streamed_pieces_are_whole_characters_and_add_up(client, bpe_model):
    chunks = list(client.completions.create(model="fable", prompt=PROMPT, max_tokens=30, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert "".join(pieces) == ours(bpe_model, 30, temperature=0)
    for piece in pieces:  # each piece is valid text on its own: never half of a character
        assert piece.encode("utf-8").decode("utf-8") == piece
    assert chunks[-1].usage.completion_tokens == 30


def test_logprobs_carry_each_tokens_bytes(client, bpe_model):
    _, tok = bpe_model
    reply = client.chat.completions.create(model="fable", messages=[{"role": "user", "content": "The fox"}],
                                           max_tokens=10, temperature=0, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == 10 == reply.usage.completion_tokens
    text = reply.choices[0].message.content
    # the bytes put the text back together (an unfinished last character is not sent as text)
    decoded = bytes(b for item in content for b in item.bytes).decode("utf-8", errors="replace")
    assert decoded.startswith(text) and len(decoded) - len(text) <= 1
    by_bytes = {tok.token_bytes(i): i for i in range(tok.vocab_size)}
    for item in content:
        assert item.token == tok.label(by_bytes[bytes(item.bytes)])
        assert len(item.top_logprobs) == 2 and item.top_logprobs[0].logprob >= item.top_logprobs[1].logprob


def test_a_stop_string_inside_a_token_never_leaks(client, bpe_model):
    whole = ours(bpe_model, 30, temperature=0)
    stop = whole[7:10]  # three characters, wherever the tokens split them
    for stream in (False, True):
        reply = client.completions.create(model="fable", prompt=PROMPT, max_tokens=30, temperature=0,
                                          stop=[stop], stream=stream)
        chunks = list(reply) if stream else [reply]
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == whole[: whole.index(stop)], stream


def test_a_lone_surrogate_is_refused_on_every_endpoint_and_the_connection_lives(server):
    conn = connect(server)
    conn.connect()
    sock = conn.sock
    with LogRecords() as log:
        for path, body, param in [("/v1/completions", {"prompt": "caf\udce9"}, "prompt"),
                                  ("/v1/completions", {"prompt": "\ud800", "echo": True, "stream": True}, "prompt"),
                                  ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\udfff"}]},
                                   "messages")]:
            conn.request("POST", path, json.dumps({"model": "fable", "max_tokens": 3, **body}),
                         {"Content-Type": "application/json"})
            reply = conn.getresponse()
            error = strict_json(reply.read())["error"]
            assert reply.status == 400 and error["param"] == param and "lone surrogate" in error["message"]
            conn.request("POST", "/v1/completions", json.dumps({"model": "fable", "prompt": "The", "max_tokens": 3}),
                         {"Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.status == 200 and strict_json(reply.read())["usage"]["completion_tokens"] == 3
    assert conn.sock is sock and not log.records, log.text()
