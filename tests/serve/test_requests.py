"""What the API answers, over real HTTP on 127.0.0.1 (a free port): the key before the body,
one 413 code, /v1/models/{id}, n choices decoded together, unsupported and ignored fields, log
probabilities that are always finite JSON, lone surrogates refused in words on a connection that
stays usable, a broken model's 503, prompts tokenised off the event loop."""

import copy
import http.client
import json
import math
import socket
import threading

import openai
import pytest
import torch

from playground.engine.config import SampleConfig
from playground.engine.model.generation import generate
from playground.serve.api import Served, Settings

from .conftest import LogRecords, connect, running, serving, strict_json

PROMPT = "to be "
KEY = {"Authorization": "Bearer k"}


@pytest.fixture(scope="module")
def server(seed_model):
    model, tok = seed_model
    with serving(Served(Settings(model_name="seed", api_keys=("k",), max_body_bytes=4096)),
                 model, tok, start_char="t", max_concurrent=4) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=30)


def post(conn: http.client.HTTPConnection, path: str, body, headers=KEY) -> tuple:
    """One request on a kept-alive connection: status, headers, parsed JSON (strictly)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **headers})
    reply = conn.getresponse()
    return reply.status, reply.headers, strict_json(reply.read())


def test_the_key_is_checked_before_the_body_is_read(server):
    # head only, no body yet: the answer must not wait for it
    with socket.create_connection(server.sock.getsockname()[:2], timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{not json")
        head = sock.recv(65536)  # times out (fails) if the server waits for the body
        assert head.startswith(b"HTTP/1.1 401")
    conn = connect(server.url)
    for body in (b"{not json", {"model": "seed", "prompt": "to", "temperature": 7}):
        status, _, payload = post(conn, "/v1/completions", body, headers={})
        assert status == 401 and payload["error"]["code"] == "invalid_api_key"


def test_both_ways_a_body_is_too_large_give_one_code(server):
    conn = connect(server.url)
    by_length = post(conn, "/v1/completions", {"model": "seed", "prompt": "to " * 3000})
    conn.request("POST", "/v1/completions", body=iter([b'{"model": "seed", "prompt": "', b"to " * 3000, b'"}']),
                 headers={"Content-Type": "application/json", **KEY}, encode_chunked=True)
    reply = conn.getresponse()
    by_bytes = (reply.status, None, strict_json(reply.read()))
    for status, _, payload in (by_length, by_bytes):
        assert status == 413 and payload["error"]["code"] == "request_too_large"
        assert "limit of 4,096 bytes" in payload["error"]["message"]


def test_a_model_can_be_retrieved_by_its_id(client, server):
    model = client.models.retrieve("seed")
    assert model.id == "seed" and model.model_dump()["vocab_size"] == 13
    conn = connect(server.url)
    conn.request("GET", "/v1/models/other", headers=KEY)
    reply = conn.getresponse()
    error = strict_json(reply.read())["error"]
    assert reply.status == 404 and error["code"] == "model_not_found" and error["param"] == "model"
    assert "'other' does not exist" in error["message"]


def test_n_choices_are_decoded_together_each_as_its_seed_alone(client, seed_model):
    model, tok = seed_model
    reply = client.completions.create(model="seed", prompt=PROMPT, max_tokens=30, temperature=1.2, seed=5, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for choice in reply.choices:  # choice i draws with seed + i
        alone = generate(model, tok, PROMPT, SampleConfig(max_new_chars=30, temperature=1.2, seed=5 + choice.index), "t")
        assert choice.text == alone
    assert reply.usage.completion_tokens == 90 and reply.usage.prompt_tokens == len(PROMPT)
    chunks = list(client.completions.create(model="seed", prompt=PROMPT, max_tokens=30, temperature=1.2, seed=5,
                                            n=3, stream=True, stream_options={"include_usage": True}))
    streamed = {i: "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i)
                for i in range(3)}
    assert streamed == {c.index: c.text for c in reply.choices}
    ends = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(c.index for c in ends) == [0, 1, 2] and chunks[-1].usage.completion_tokens == 90
    chat = client.chat.completions.create(model="seed", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=10, n=2, seed=1)
    assert [c.index for c in chat.choices] == [0, 1] and chat.usage.completion_tokens == 20


@pytest.mark.parametrize("n,words", [(9, "less than or equal to 8"), (5, "more choices than this server decodes")])
def test_too_many_choices_are_refused(server, n, words):
    status, _, payload = post(connect(server.url), "/v1/completions", {"model": "seed", "prompt": "to", "n": n})
    assert status == 400 and payload["error"]["param"] == "n" and words in payload["error"]["message"]


def test_unsupported_fields_are_refused_and_unknown_ones_named(server):
    conn = connect(server.url)
    for field, value, path in [("logit_bias", {"3": 5}, "/v1/completions"), ("presence_penalty", 0.5, "/v1/completions"),
                               ("suffix", "end", "/v1/completions"), ("best_of", 3, "/v1/completions"),
                               ("response_format", {"type": "json_object"}, "/v1/chat/completions"),
                               ("tools", [{"type": "function"}], "/v1/chat/completions")]:
        body = {"model": "seed", "max_tokens": 2, field: value}
        body.update({"prompt": "to"} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "to"}]})
        status, _, payload = post(conn, path, body)
        assert status == 400 and payload["error"]["param"] == field, (field, payload)
        assert f"{field} is not supported" in payload["error"]["message"]
    # defaults ask for nothing; fields this server does not know are named in a header
    status, headers, payload = post(conn, "/v1/completions", {
        "model": "seed", "prompt": "to", "max_tokens": 2, "presence_penalty": 0, "logit_bias": {}, "best_of": 1,
        "user": "me", "frobnicate": True, "bad name\n": 1})
    assert status == 200 and headers["X-Ignored-Fields"] == '"bad name\\n", frobnicate, user'
    status, headers, _ = post(conn, "/v1/chat/completions", {"model": "seed", "max_tokens": 2,
                                                             "messages": [{"role": "user", "content": "to"}]})
    assert status == 200 and "X-Ignored-Fields" not in headers


def finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(v) for v in value)
    return True


def test_logprobs_of_an_empty_prompt_are_finite_json(server):
    conn = connect(server.url)
    status, _, payload = post(conn, "/v1/completions", {"model": "seed", "prompt": "", "max_tokens": 3, "logprobs": 5})
    lp = payload["choices"][0]["logprobs"]
    assert status == 200 and finite_everywhere(payload)
    assert lp["top_logprobs"][0] == {"t": 0.0}  # the start token is certain: its alternatives are left out
    assert len(lp["top_logprobs"][1]) == 5
    status, _, payload = post(conn, "/v1/chat/completions", {"model": "seed", "max_tokens": 3, "logprobs": True,
                                                             "top_logprobs": 3,
                                                             "messages": [{"role": "user", "content": ""}]})
    first = payload["choices"][0]["logprobs"]["content"][0]
    assert status == 200 and finite_everywhere(payload) and [t["token"] for t in first["top_logprobs"]] == ["t"]
    for path, body in [("/v1/completions", {"prompt": "", "logprobs": 5}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}], "logprobs": True,
                                                 "top_logprobs": 5})]:
        conn.request("POST", path, json.dumps({"model": "seed", "max_tokens": 3, "stream": True, **body}),
                     {"Content-Type": "application/json", **KEY})
        lines = [line for line in conn.getresponse().read().decode().split("\n\n") if line]
        assert lines[-1] == "data: [DONE]"
        assert all(finite_everywhere(strict_json(line.removeprefix("data: "))) for line in lines[:-1])


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"prompt": "to \ud800be", "echo": True}, "prompt"),
    ("/v1/completions", {"prompt": ["\udfff"]}, "prompt"),
    ("/v1/completions", {"prompt": "to", "stop": ["\ud800"]}, "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "ok"},
                                           {"role": "user", "content": "\ud83d to"}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a\udc00"}]}]},
     "messages"),
])
def test_a_lone_surrogate_is_refused_in_words_and_the_connection_stays_usable(server, path, body, param):
    conn = connect(server.url)
    with LogRecords() as log:
        status, _, payload = post(conn, path, {"model": "seed", **body})
        sock = conn.sock
        assert status == 400 and payload["error"]["param"] == param
        assert "lone surrogate" in payload["error"]["message"]
        status, _, payload = post(conn, "/v1/completions", {"model": "seed", "prompt": "to", "max_tokens": 2})
        assert status == 200 and conn.sock is sock  # the same connection, still usable
    assert not log.records, log.text()


def test_a_model_with_nan_weights_says_so_and_answers_503(seed_model):
    model, tok = seed_model
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with running(Served(Settings(model_name="seed")), broken, tok, "t") as url:
        conn = connect(url)
        conn.request("GET", "/health")
        reply = conn.getresponse()
        health = strict_json(reply.read())
        assert reply.status == 503 and health["status"] == "error" and "NaN" in health["reason"]
        status, _, payload = post(conn, "/v1/completions", {"model": "seed", "prompt": "to"}, headers={})
        assert status == 503 and "NaN" in payload["error"]["message"]


def test_prompts_are_tokenised_off_the_event_loop(server, seed_model):
    _, tok = seed_model
    threads = []
    real = tok.encode_lenient

    def recording(text):
        if text.startswith("to be or"):
            threads.append(threading.current_thread().name)
        return real(text)

    tok.encode_lenient = recording  # on the instance, for this test only
    try:
        status, _, _ = post(connect(server.url), "/v1/completions", {"model": "seed", "prompt": "to be or not",
                                                                     "max_tokens": 1})
    finally:
        del tok.encode_lenient
    assert status == 200 and threads and "serve" not in threads  # "serve": the event loop's thread


def test_a_top_p_below_float32s_range_keeps_the_likeliest_token(client):
    # found by the fuzz test: such a top_p read as 0 in float32 and kept no token at all (a 500)
    greedy = client.completions.create(model="seed", prompt=PROMPT, max_tokens=20, temperature=0).choices[0].text
    tiny = client.completions.create(model="seed", prompt=PROMPT, max_tokens=20, top_p=1e-320, seed=3)
    assert tiny.choices[0].text == greedy


def test_max_tokens_up_to_the_limit_is_served_and_one_more_refused(seed_model):
    """The limit is the largest max_tokens served: with --max-tokens-limit 3, max_tokens 3 (and
    chat's max_completion_tokens 3) writes three tokens, 4 is refused, and a request that names
    no budget gets the limit when the default (16) is above it."""
    model, tok = seed_model
    with running(Served(Settings(model_name="seed", max_tokens_limit=3)), model, tok, "t") as url:
        conn = connect(url)
        chat = {"model": "seed", "messages": [{"role": "user", "content": "to"}]}
        for path, body in [("/v1/completions", {"model": "seed", "prompt": "to", "max_tokens": 3}),
                           ("/v1/chat/completions", {**chat, "max_completion_tokens": 3}),
                           ("/v1/completions", {"model": "seed", "prompt": "to"})]:
            status, _, payload = post(conn, path, body, headers={})
            assert status == 200 and payload["usage"]["completion_tokens"] == 3, (path, body, payload)
        for path, body in [("/v1/completions", {"model": "seed", "prompt": "to", "max_tokens": 4}),
                           ("/v1/chat/completions", {**chat, "max_completion_tokens": 4})]:
            status, _, payload = post(conn, path, body, headers={})
            assert status == 400 and payload["error"]["param"] == "max_tokens"
            assert payload["error"]["message"] == "max_tokens 4 is above this server's limit of 3"
