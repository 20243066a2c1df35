"""The OpenAI-compatible server, over real HTTP on 127.0.0.1 (a free port chosen here), with the
official openai client and raw requests: same text as the CLI, streaming, stop strings,
logprobs, every error, cancellation, overload. Every wait is bounded."""

import http.client
import json
import time

import openai
import pytest

from playground.engine.config import SampleConfig
from playground.engine.model.generation import generate
from playground.serve.api import Served, Settings

from .conftest import running

PROMPT = "to be "


@pytest.fixture(scope="module")
def server(seed_model):
    model, tok = seed_model
    with running(Served(Settings(model_name="seed", api_keys=("k1", "k2"), max_body_bytes=4096)),
                 model, tok, start_char="t") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="k2", max_retries=0, timeout=30)


def raw(url: str, method: str, path: str, body=None, headers=None) -> http.client.HTTPResponse:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    return conn.getresponse()


def metric(url: str, name: str) -> float:
    text = raw(url, "GET", "/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def test_models_lists_the_one_model_with_its_sizes(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["seed"]
    extra = models[0].model_dump()
    assert extra["vocab_size"] == 13 and extra["block_size"] == 32 and extra["params"] == 103_821


def test_greedy_and_seeded_text_equals_the_cli(client, seed_model):
    model, tok = seed_model
    greedy = client.completions.create(model="seed", prompt=PROMPT, max_tokens=60, temperature=0)
    assert greedy.choices[0].text == generate(model, tok, PROMPT, SampleConfig(max_new_chars=60, temperature=0), "t")
    assert greedy.choices[0].text.startswith("or not to be that is the question to be")
    assert greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 60
    seeded = client.completions.create(model="seed", prompt=PROMPT, max_tokens=80, temperature=1.5, top_p=0.95,
                                       seed=7, extra_body={"top_k": 5})
    cli = generate(model, tok, PROMPT, SampleConfig(max_new_chars=80, temperature=1.5, top_k=5, top_p=0.95, seed=7), "t")
    assert seeded.choices[0].text == cli
    for temperature in (0.8, 1.0, 1.7):  # temperature alone: the engine samples rows together
        plain = client.completions.create(model="seed", prompt=PROMPT, max_tokens=120, temperature=temperature,
                                          seed=11)
        cli = generate(model, tok, PROMPT, SampleConfig(max_new_chars=120, temperature=temperature, seed=11), "t")
        assert plain.choices[0].text == cli, temperature


def test_streaming_sends_pieces_then_usage_then_done(client, server):
    chunks = list(client.completions.create(model="seed", prompt=PROMPT, max_tokens=40, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == client.completions.create(model="seed", prompt=PROMPT, max_tokens=40, temperature=0).choices[0].text
    # piece by piece: one chunk a character when the client keeps up; a busy machine lets several
    # characters wait, and the server then sends them in one chunk (so at least two, not forty)
    assert len([c for c in chunks if c.choices and c.choices[0].text]) >= 2
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    stream = raw(server, "POST", "/v1/completions", {"model": "seed", "prompt": PROMPT, "max_tokens": 3, "stream": True},
                 {"Authorization": "Bearer k1"})
    lines = [line for line in stream.read().decode().split("\n\n") if line]
    assert stream.getheader("content-type").startswith("text/event-stream") and lines[-1] == "data: [DONE]"


def test_stop_strings_never_leak_not_even_in_part(client):
    # greedy goes "or not to be that is the question..."; "t to" spans pieces and must not show
    for stream in (False, True):
        reply = client.completions.create(model="seed", prompt=PROMPT, max_tokens=60, temperature=0,
                                          stop=["t to", "zzz"], stream=stream)
        chunks = list(reply) if stream else [reply]
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == "or no", (stream, text)
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_logprobs_are_the_models_own(client, seed_model):
    import torch
    model, tok = seed_model
    reply = client.completions.create(model="seed", prompt=PROMPT, max_tokens=5, temperature=0, logprobs=3)
    lp = reply.choices[0].logprobs
    assert lp.tokens == list(reply.choices[0].text) and len(lp.top_logprobs) == 5
    assert all(len(top) == 3 for top in lp.top_logprobs) and lp.text_offset == [0, 1, 2, 3, 4]
    with torch.no_grad():
        first = model(torch.tensor([tok.encode(PROMPT)]))[0][0, -1].log_softmax(-1)
    assert lp.token_logprobs[0] == pytest.approx(float(first.max()), abs=1e-5)


def test_chat_joins_messages_as_plain_text(client, seed_model):
    model, tok = seed_model
    messages = [{"role": "system", "content": "to be or not"}, {"role": "user", "content": "to be that is the"}]
    reply = client.chat.completions.create(model="seed", messages=messages, max_tokens=20, temperature=0)
    joined = "to be or not\nto be that is the"
    assert reply.choices[0].message.content == generate(model, tok, joined, SampleConfig(max_new_chars=20, temperature=0))
    assert reply.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model="seed", messages=messages, max_tokens=20, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content


@pytest.mark.parametrize("body,status,param,words", [
    ({"model": "other", "prompt": "to"}, 404, "model", "does not exist"),
    ({"model": "seed", "prompt": "to", "temperature": 7}, 400, "temperature", "less than or equal to 2"),
    ({"model": "seed", "prompt": "to", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ({"model": "seed", "prompt": "to", "n": 9}, 400, "n", "less than or equal to 8"),
    ({"model": "seed", "prompt": "XYZ"}, 400, "prompt", "none of the prompt's characters"),
    ({"model": "seed", "prompt": "to", "max_tokens": 10**6}, 400, "max_tokens", "above this server's limit"),
    ({"model": "seed", "prompt": "to", "logprobs": 9}, 400, "logprobs", "less than or equal to 5"),
    ({"model": "seed"}, 400, "prompt", "Field required"),
])
def test_bad_requests_get_openai_shaped_errors(server, body, status, param, words):
    reply = raw(server, "POST", "/v1/completions", body, {"Authorization": "Bearer k1"})
    payload = json.loads(reply.read())
    assert reply.status == status and payload["error"]["param"] == param and words in payload["error"]["message"]
    assert set(payload["error"]) == {"message", "type", "param", "code"}


def test_keys_bodies_and_json_are_checked(server):
    body = {"model": "seed", "prompt": "to"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer k1x"}):
        reply = raw(server, "POST", "/v1/completions", body, headers)
        assert reply.status == 401 and json.loads(reply.read())["error"]["type"] == "authentication_error"
    big = raw(server, "POST", "/v1/completions", {"model": "seed", "prompt": "to " * 3000}, {"Authorization": "Bearer k1"})
    assert big.status == 413 and "limit of 4,096 bytes" in json.loads(big.read())["error"]["message"]
    broken = raw(server, "POST", "/v1/completions", b"{not json", {"Authorization": "Bearer k1"})
    assert broken.status == 400 and "not valid JSON" in json.loads(broken.read())["error"]["message"]
    assert raw(server, "GET", "/health").status == 200  # no key needed
    assert raw(server, "OPTIONS", "/v1/completions", headers={"Origin": "http://evil.example"}) \
        .getheader("access-control-allow-origin") is None  # CORS is off unless origins are given


def test_a_client_that_hangs_up_stops_costing_anything(server):
    before = metric(server, "playground_requests_cancelled_total")
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v1/completions", json.dumps({"model": "seed", "prompt": PROMPT, "max_tokens": 4000,
                                                        "stream": True}),
                 {"Content-Type": "application/json", "Authorization": "Bearer k1"})
    reply = conn.getresponse()
    assert reply.readline().startswith(b"data: ")  # it is generating
    assert metric(server, "playground_requests_running") == 1
    conn.sock.close()  # hang up mid-stream
    conn.close()
    deadline = time.monotonic() + 15
    while metric(server, "playground_requests_running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "playground_requests_running") == 0
    assert metric(server, "playground_requests_cancelled_total") == before + 1
    made = metric(server, "playground_tokens_generated_total")
    time.sleep(0.3)
    assert metric(server, "playground_tokens_generated_total") == made  # nothing more is generated
