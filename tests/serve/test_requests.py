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


# -- the same rules without a server: the middlewares, the request shapes and _check called directly
def asgi(middleware, scope: dict, messages=(), receive=None) -> tuple[list, list]:
    """Run an ASGI middleware around an app that reads the whole body: (what was sent, the
    messages the app received). An app that is never called receives nothing."""
    import asyncio
    sent, received = [], []
    queue = list(messages)

    async def feed():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def app(given, receive, send):
        assert given is scope  # the request passes on as it came
        while True:
            message = await receive()
            received.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})

    asyncio.run(middleware(app)(scope, receive or feed, send))
    return sent, received


def http_scope(path="/v1/completions", method="POST", headers=()):
    return {"type": "http", "path": path, "method": method, "headers": list(headers)}


def test_the_key_check_by_hand():
    from playground.serve.limits import KeyCheck

    def check(scope, keys=("k1", "k2")):
        sent, received = asgi(lambda app: KeyCheck(app, keys), scope, [{"type": "http.request", "body": b"x"}])
        return sent[0]["status"], json.loads(sent[1]["body"]) if len(sent) > 1 else None, received

    bearer = lambda key: [(b"authorization", b"Bearer " + key)]  # noqa: E731
    status, body, received = check(http_scope())
    assert (status, body["error"]["code"], body["error"]["type"], received) == (
        401, "invalid_api_key", "authentication_error", [])
    assert body["error"]["message"] == "no API key: send it as 'Authorization: Bearer KEY'"
    for header in (bearer(b"k3"), bearer(b"k"), bearer(b"k1x"), [(b"authorization", b"Basic k1")]):
        status, body, _ = check(http_scope(headers=header))
        assert body == {"error": {"message": "the API key is not valid", "type": "authentication_error",
                                  "param": None, "code": "invalid_api_key"}} and status == 401, header
    assert check(http_scope(headers=bearer(b"")))[1]["error"]["message"].startswith("no API key")
    for header in (bearer(b"k1"), bearer(b"k2"), bearer(b" k2 ")):   # any of the keys, spaces aside
        assert check(http_scope(headers=header))[0] == 200
    for scope in (http_scope("/health", "GET"), http_scope("/metrics", "GET"), http_scope(method="OPTIONS"),
                  http_scope("/x/v1/completions"), {"type": "websocket", "path": "/v1/x", "method": "GET"}):
        assert check(scope)[0] == 200, scope  # only /v1/ requests over HTTP need a key
    assert check(http_scope(), keys=())[0] == 200  # no keys: no check


def test_the_body_limit_by_hand():
    import asyncio

    from playground.serve.limits import BodyLimit
    from playground.serve.openai_shapes import APIError
    limit = lambda app: BodyLimit(app, max_bytes=10, read_timeout_s=0.05)  # noqa: E731
    assert BodyLimit(None, 10).read_timeout_s == 30.0 and BodyLimit(None, 10**6).too_large().body["error"][
        "message"] == "the request body is larger than this server's limit of 1,000,000 bytes"
    # by Content-Length: refused before the app runs, in the one shape and code
    sent, received = asgi(limit, http_scope(headers=[(b"content-length", b"11")]))
    body = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 413 and received == [] and body["error"]["code"] == "request_too_large"
    assert body["error"]["message"] == "the request body is larger than this server's limit of 10 bytes"
    assert dict(sent[0]["headers"]) == {b"content-type": b"application/json",
                                        b"content-length": str(len(sent[1]["body"])).encode()}
    # up to the limit, by its length and by the bytes that arrive, the app gets every message
    chunks = [{"type": "http.request", "body": b"12345", "more_body": True}, {"type": "http.request", "body": b"67890"}]
    sent, received = asgi(limit, http_scope(headers=[(b"content-length", b"10")]), chunks)
    assert sent[0]["status"] == 200 and received == chunks
    # past the limit by the bytes that arrive (no length given): the app's handler answers
    with pytest.raises(APIError) as refused:
        asgi(limit, http_scope(), [{"type": "http.request", "body": b"12345", "more_body": True},
                                   {"type": "http.request", "body": b"678901"}])
    assert refused.value.status == 413 and refused.value.body["error"]["code"] == "request_too_large"
    assert refused.value.body["error"]["message"].endswith("limit of 10 bytes")
    # a body that does not arrive in time: 408, after the deadline and not before
    async def slow():
        await asyncio.sleep(0.5)
        return {"type": "http.request", "body": b"late"}
    with pytest.raises(APIError) as late:
        asgi(limit, http_scope(), receive=slow)
    assert late.value.status == 408 and late.value.body["error"]["code"] == "request_timeout"
    assert late.value.body["error"]["message"] == "the request body did not arrive within 0.05 s"
    # once the body is in, the app may wait past the deadline for the client's disconnect
    events = [{"type": "http.request", "body": b"ok"}, {"type": "http.disconnect"}]

    async def feed():
        return events.pop(0)

    async def patient(scope, receive, send):
        assert scope["type"] in ("http", "lifespan")   # the scope passes on as it came
        assert (await receive())["body"] == b"ok"
        await asyncio.sleep(0.1)
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
    sent = []

    async def send(message):
        sent.append(message)
    asyncio.run(BodyLimit(patient, 10, 0.05)(http_scope(), feed, send))
    assert sent[0]["status"] == 200
    events.extend([{"type": "http.request", "body": b"ok"}, {"type": "http.disconnect"}])
    asyncio.run(BodyLimit(patient, 10, 0.05)({"type": "lifespan"}, feed, send))  # not HTTP: let through
    assert sent[1]["status"] == 200


def test_an_api_error_is_sent_whole_with_its_headers():
    import asyncio

    from playground.serve.limits import answer
    from playground.serve.openai_shapes import APIError
    sent = []

    async def send(message):
        sent.append(message)
    error = APIError(503, "busy", "server_error", param="p", code="c", headers={"Retry-After": "1"})
    assert (error.status, error.status_code, error.headers, error.detail) == (503, 503, {"Retry-After": "1"}, "busy")
    plain = APIError(400, "bad")
    assert (plain.body, plain.detail, plain.headers) == ({"error": {
        "message": "bad", "type": "invalid_request_error", "param": None, "code": None}}, "bad", None)
    asyncio.run(answer(send, error))
    assert sent[0] == {"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(sent[1]["body"])).encode()),
        (b"retry-after", b"1")]}
    assert json.loads(sent[1]["body"]) == {"error": {"message": "busy", "type": "server_error", "param": "p",
                                                     "code": "c"}}
    assert sent[1]["type"] == "http.response.body" and len(sent) == 2


def test_request_shapes_by_hand():
    from pydantic import ValidationError

    from playground.serve.openai_shapes import ChatRequest, CompletionRequest, error, ignored_header, usage
    ask = lambda **fields: CompletionRequest(model="m", prompt="p", **fields)  # noqa: E731
    assert ask(stop="xy").stop == ["xy"] and ask(stop=["a", "", "b"]).stop == ["a", "b"] and ask(stop=[]).stop == []
    assert ask(stop=["a", "b", "c", "d"]).stop == ["a", "b", "c", "d"]
    with pytest.raises(ValidationError, match="at most 4 stop strings"):
        ask(stop=["a", "b", "c", "d", "e"])
    with pytest.raises(ValidationError) as lone:
        ask(stop=["ok\ud800"])
    assert [(e["type"], e["loc"], e["msg"]) for e in lone.value.errors()] == [("lone_surrogate", ("stop",), (
        "holds a lone surrogate (\\ud800 at character 2), which is not a character: send valid Unicode text"))]
    assert CompletionRequest(model="m", prompt=["one"]).prompt == "one"
    for prompts in ([], ["a", "b"]):
        with pytest.raises(ValidationError) as many:
            CompletionRequest(model="m", prompt=prompts)
        assert many.value.errors()[0]["msg"] == "Value error, one prompt per request (a list must hold exactly one string)"
    with pytest.raises(ValidationError, match=r"\\udfff at character 0"):
        CompletionRequest(model="m", prompt=["\udfff"])
    assert not ask().include_usage and not ask(stream_options={}).include_usage
    assert ask(stream_options={"include_usage": True}).include_usage
    # unsupported fields: refused unless they ask for nothing (a bool is no number here)
    assert ask(presence_penalty=0, logit_bias={}, tool_choice="auto", min_p=None, user="u").unsupported() is None
    assert ask(presence_penalty=False).unsupported() == "presence_penalty"
    assert ask(repetition_penalty=1.0).unsupported() is None and ask(repetition_penalty=1.1).unsupported()
    assert ask(best_of=3, n=3).unsupported() is None and ask(best_of=3, n=2).unsupported() == "best_of"
    assert ask(user="u", logit_bias={"1": 1}, suffix="s").unsupported() == "logit_bias"  # the first one set
    assert ask(user="u", zeta=1, alpha=2, suffix="").ignored() == ["alpha", "user", "zeta"] and ask().ignored() == []
    chat = ChatRequest(model="m", messages=[{"role": "system", "content": "a"}, {"role": "user", "content": None},
                                            {"role": "user", "content": [{"type": "text", "text": "b"},
                                                                         {"type": "text", "text": "c"}]}])
    assert chat.prompt == "a\n\nbc" and [m.text for m in chat.messages] == ["a", "", "bc"]
    for content in ("x\ud800", [{"type": "text", "text": "ok"}, {"type": "text", "text": "\udc00"}]):
        with pytest.raises(ValidationError, match="lone surrogate"):
            ChatRequest(model="m", messages=[{"role": "user", "content": content}])
    assert error("m") == {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    assert usage(3, 4) == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    names = [f"f{i}" for i in range(18)]
    assert ignored_header(names[:16]) == ", ".join(names[:16])
    assert ignored_header(names[:17]) == ", ".join(names[:16]) + ", and 1 more"
    assert ignored_header(["a.b-c_D9", "x" * 64, "y" * 65, "é"]) == f'a.b-c_D9, {"x" * 64}, "{"y" * 64}", "\\u00e9"'


def test_what_check_refuses_before_the_prompt_is_read():
    """_check by hand: the model's name, unsupported fields, max_tokens against the limit (the
    limit itself is served), its defaults (16, chat 256, never above the limit), n against the
    rows decoded at once."""
    from types import SimpleNamespace

    from playground.serve.api import _check
    from playground.serve.openai_shapes import APIError, ChatRequest, CompletionRequest

    def check(limit=100, rows=4, chat=False, **fields):
        served = Served(Settings(model_name="m", max_tokens_limit=limit), engine=SimpleNamespace(max_concurrent=rows))
        body = (ChatRequest(model=fields.pop("model", "m"), messages=[{"role": "user", "content": "p"}], **fields)
                if chat else CompletionRequest(model=fields.pop("model", "m"), prompt="p", **fields))
        return _check(served, body, chat)

    def refusal(**settings) -> APIError:
        with pytest.raises(APIError) as refused:
            check(**settings)
        return refused.value
    assert (check(limit=1000), check(limit=1000, chat=True), check(limit=10), check(limit=10, chat=True)) == (
        16, 256, 10, 10)
    assert check(max_tokens=100) == 100 and check(max_tokens=1) == 1
    assert check(max_tokens=7, max_completion_tokens=9) == 7  # a chat field: unknown to completions
    assert check(chat=True, max_tokens=7) == 7 and check(chat=True, max_tokens=7, max_completion_tokens=9) == 9
    wrong = refusal(max_tokens=101)
    assert (wrong.status, wrong.body["error"]["param"]) == (400, "max_tokens")
    assert wrong.body["error"]["message"] == "max_tokens 101 is above this server's limit of 100"
    assert refusal(chat=True, max_completion_tokens=101).body["error"]["message"].startswith("max_tokens 101 ")
    assert check(n=4) == 16
    wrong = refusal(n=5)
    assert (wrong.status, wrong.body["error"]["param"]) == (400, "n")
    assert wrong.body["error"]["message"] == "n 5 is more choices than this server decodes at once (4, its --max-concurrent)"
    wrong = refusal(model="other")
    assert wrong.body["error"]["message"] == "the model 'other' does not exist; this server has 'm'"
    assert (wrong.status, wrong.body["error"]["code"], wrong.body["error"]["param"]) == (404, "model_not_found", "model")
    wrong = refusal(suffix="s")
    assert (wrong.status, wrong.body["error"]["code"], wrong.body["error"]["param"]) == (400, "unsupported_parameter", "suffix")
    assert wrong.body["error"]["message"] == "suffix is not supported by this server: leave it out (or send its default)"
