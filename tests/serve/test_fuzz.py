"""Both endpoints fuzzed over real HTTP on 127.0.0.1 (a free port), on one kept-alive connection:
any JSON value in any field (any Unicode, lone surrogates and NUL included, NaN and Infinity
too), and every answer is a 2xx or a 4xx/503 in OpenAI's error shape, strict JSON (a stream's
every event too), never a 500, never a traceback in the server's log, and the connection stays
usable. Bounded: a few hundred small requests (max_tokens at most 4)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.serve.api import Served, Settings

from .conftest import LogRecords, connect, serving, strict_json

TEXT = st.text(st.characters(codec=None, exclude_categories=[]), max_size=12)  # surrogates and NUL too
SCALARS = st.none() | st.booleans() | st.integers(-10, 10) | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=6)
PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]) | JSON,
                                 "content": TEXT | st.lists(PART | JSON, max_size=2) | JSON})
SMALL = st.integers(0, 9)
# each field: values it may well accept (so requests get through: streams, n, logprobs, echo...)
PLAUSIBLE = {"model": st.just("seed"), "max_tokens": SMALL, "temperature": st.floats(0, 2.5), "top_p": st.floats(0, 1),
             "top_k": st.integers(-2, 20), "seed": st.integers(-1, 2**63), "stop": TEXT | st.lists(TEXT, max_size=5),
             "stream": st.booleans(), "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
             "n": SMALL, "logit_bias": st.just({}) | JSON, "presence_penalty": st.just(0) | JSON, "user": TEXT,
             "prompt": TEXT | st.lists(TEXT, max_size=2), "logprobs": SMALL | st.booleans(), "echo": st.booleans(),
             "suffix": st.just("") | TEXT, "best_of": SMALL, "messages": st.lists(MESSAGE, min_size=1, max_size=2),
             "top_logprobs": SMALL, "max_completion_tokens": SMALL,
             "response_format": st.just({"type": "text"}) | JSON, "tools": st.just([]) | JSON}
COMMON = ["model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options", "n",
          "logit_bias", "presence_penalty", "user"]
FIELDS = {"/v1/completions": COMMON + ["prompt", "logprobs", "echo", "suffix", "best_of"],
          "/v1/chat/completions": COMMON + ["messages", "logprobs", "top_logprobs", "max_completion_tokens",
                                            "response_format", "tools"]}


def requests(path: str):
    """A valid request, streamed or not, with up to four of its fields (or unknown ones) set to
    anything: a value the field may accept, or any JSON at all."""
    base = {"model": "seed", "max_tokens": 2}
    base.update({"messages": [{"role": "user", "content": "to be"}]} if "chat" in path else {"prompt": "to be"})
    changes = st.lists(st.sampled_from(FIELDS[path]) | TEXT, max_size=4, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: PLAUSIBLE.get(name, JSON) | JSON for name in names}))
    return st.tuples(st.booleans(), changes).map(lambda sc: {**base, "stream": sc[0], **sc[1]})


@pytest.fixture(scope="module")
def fuzzed(seed_model):
    model, tok = seed_model
    served = Served(Settings(model_name="seed", max_tokens_limit=4))
    with serving(served, model, tok, "t", max_concurrent=8) as server:
        yield server


def check(conn, path: str, body: dict) -> None:
    data = json.dumps(body).encode()  # ASCII: lone surrogates travel as \\ud800, NaN as NaN
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    raw = reply.read().decode("utf-8")  # strict UTF-8: a lone surrogate would not decode
    assert reply.status != 500 and (200 <= reply.status < 300 or reply.status in (400, 404, 503)), (reply.status, raw)
    assert not reply.will_close, "the server closed the connection"
    if reply.getheader("content-type", "").startswith("text/event-stream"):
        events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
        assert events[-1] == "[DONE]"
        for event in events[:-1]:
            assert "error" not in strict_json(event), event
    else:
        payload = strict_json(raw)
        if reply.status >= 400:
            assert set(payload["error"]) == {"message", "type", "param", "code"}
        else:
            assert payload["choices"]


@pytest.mark.parametrize("path", list(FIELDS))
def test_any_json_in_any_field_never_breaks_the_server(fuzzed, path):
    conn = connect(fuzzed.url)
    conn.connect()
    sock = conn.sock

    @settings(max_examples=500, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests(path))
    def one(body):
        check(conn, path, body)

    with LogRecords() as log:
        one()
        check(conn, path, {"model": "seed", "max_tokens": 2, "prompt": "to",
                           "messages": [{"role": "user", "content": "to"}]})
    assert conn.sock is sock  # one connection all along
    assert not log.records, log.text()
