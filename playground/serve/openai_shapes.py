"""The OpenAI request and response shapes the server speaks (as vLLM, llama.cpp's server,
Ollama and TGI serve them): pydantic models that check every field, and builders for the
answers, the streamed chunks and the errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOPS = 4


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields both endpoints share; unknown fields are ignored, as OpenAI's clients send
    some (user, frequency_penalty...) that this server does not use."""

    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)          # an extension (vLLM's): keep the k likeliest; 0 or -1: all
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stop: Optional[Union[str, list[str]]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(1, ge=1, le=1)          # one choice per request

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        return [s for s in stops if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


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
            return value[0]
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"] = "text"
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Union[str, list[TextPart], None] = None

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
