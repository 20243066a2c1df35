"""The OpenAI request and response shapes the server speaks (as vLLM, llama.cpp's server,
Ollama and TGI serve them): pydantic models that check every field, and builders for the
answers, the streamed chunks and the errors."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

MAX_STOPS = 4
MAX_N = 8              # choices per request (and never more than the rows decoded at once)
_SURROGATE = re.compile("[\ud800-\udfff]")

# OpenAI fields this server knows and cannot honour: refused (400) unless set to a value that asks
# for nothing; any other field it does not know is ignored and named in the X-Ignored-Fields header
UNSUPPORTED: dict[str, tuple] = {
    "logit_bias": (None, {}), "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
    "repetition_penalty": (None, 1), "min_p": (None, 0), "min_tokens": (None, 0), "best_of": (None, 1),
    "suffix": (None, ""), "response_format": (None, {"type": "text"}), "tools": (None, []),
    "tool_choice": (None, "none", "auto"), "functions": (None, []), "function_call": (None, "none", "auto"),
    "audio": (None,), "modalities": (None, ["text"]), "prediction": (None,),
}


class APIError(HTTPException):
    """An answer in OpenAI's error shape. An HTTPException, so one raised while the body is
    read (the size limit, the read deadline) reaches the app's handler as it is."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(status, message, headers)
        self.status, self.body = status, error(message, kind, param, code)


def whole_text(value: str) -> str:
    """Refuse a lone UTF-16 surrogate (JSON's "\\ud800"): it is no character, no tokenizer can
    encode it and no answer can carry it back."""
    found = _SURROGATE.search(value)
    if found:
        raise PydanticCustomError("lone_surrogate", "holds a lone surrogate (\\u{code} at character {at}), "
                                  "which is not a character: send valid Unicode text",
                                  {"code": f"{ord(found.group()):04x}", "at": found.start()})
    return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields both endpoints share. Fields it does not know are kept aside (model_extra):
    those in UNSUPPORTED are refused when they ask for something, the others reported as
    ignored. Numbers must be finite (JSON's NaN and Infinity are refused)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)          # an extension (vLLM's): keep the k likeliest; 0 or -1: all
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stop: Optional[Union[str, list[str]]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(1, ge=1, le=MAX_N)      # choices, decoded together

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        return [whole_text(s) for s in stops if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> Optional[str]:
        """The first known-but-unsupported field set to a value that asks for something."""
        for name, value in (self.model_extra or {}).items():
            if name in UNSUPPORTED and not _asks_nothing(value, UNSUPPORTED[name]):
                if not (name == "best_of" and value == self.n):
                    return name
        return None

    def ignored(self) -> list[str]:
        """The fields this server does not know (and so ignores)."""
        return sorted(name for name in (self.model_extra or {}) if name not in UNSUPPORTED)


def _asks_nothing(value: Any, defaults: tuple) -> bool:
    return value is None or any(value == d and isinstance(value, bool) == isinstance(d, bool) for d in defaults)


class CompletionRequest(Sampling):
    prompt: Union[str, list[str]]
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("one prompt per request (a list must hold exactly one string)")
            value = value[0]
        return whole_text(value)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"] = "text"
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Union[str, list[TextPart], None] = None

    @field_validator("content")
    @classmethod
    def _whole(cls, value):
        for text in [value] if isinstance(value, str) else [part.text for part in value or ()]:
            whole_text(text)
        return value

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=5)
    max_completion_tokens: Optional[int] = Field(None, ge=1)

    @property
    def prompt(self) -> str:
        """No chat template: the messages' texts, one per line, for the model to continue."""
        return "\n".join(m.text for m in self.messages)


# -- answers --------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def error(message: str, kind: str = "invalid_request_error", param: Optional[str] = None,
          code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def ignored_header(names: list[str], most: int = 16) -> str:
    """The X-Ignored-Fields value: field names as JSON strings would write them in ASCII (a
    header can carry no other text), the first `most` of them."""
    shown = [name if re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name) else json.dumps(name[:64]) for name in names]
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown[:most]) + more


def completion_logprobs(tokens: list, offset: int) -> dict:
    """OpenAI's legacy logprobs object for the generated tokens (engine.TokenInfo); offsets
    count characters from `offset`."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for info in tokens:
        out["tokens"].append(info.token)
        out["token_logprobs"].append(info.logprob)
        out["top_logprobs"].append({t: lp for t, lp, _ in info.top})
        out["text_offset"].append(offset)
        offset += info.chars
    return out


def chat_logprobs(tokens: list) -> dict:
    """The chat logprobs object: each token with its UTF-8 bytes (a BPE token may hold part
    of a character; the bytes let a client put characters back together)."""
    return {"content": [{"token": info.token, "logprob": info.logprob, "bytes": list(info.data),
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(data)}
                                          for t, lp, data in info.top]}
                        for info in tokens]}


def sse(payload: Union[dict, str]) -> str:
    """One server-sent event: a data line with the JSON chunk (or [DONE])."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def envelope(kind: str, rid: str, model: str, **fields) -> dict:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model, **fields}
