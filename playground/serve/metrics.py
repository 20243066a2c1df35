"""What /metrics reports, in Prometheus's text format (prometheus-client): requests running and
waiting, finished, cancelled and rejected requests, tokens, and latency histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds: from a few milliseconds (a small model's token) to minutes (a long request)
LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.running = Gauge("playground_requests_running", "Requests being generated now", registry=r)
        self.waiting = Gauge("playground_requests_waiting", "Requests queued for a free slot", registry=r)
        self.finished = Counter("playground_requests_finished", "Requests that ran to their end",
                                ["reason"], registry=r)
        self.cancelled = Counter("playground_requests_cancelled", "Requests whose client hung up", registry=r)
        self.rejected = Counter("playground_requests_rejected", "Requests turned away (queue full)",
                                registry=r)
        self.tokens = Counter("playground_tokens_generated", "Tokens generated", registry=r)
        self.prompt_tokens = Counter("playground_prompt_tokens", "Prompt tokens read", registry=r)
        self.time_to_first_token = Histogram("playground_time_to_first_token_seconds",
                                             "From the request's arrival to its first token",
                                             buckets=LATENCY, registry=r)
        self.time_between_tokens = Histogram("playground_time_between_tokens_seconds",
                                             "Between two tokens of one request", buckets=LATENCY, registry=r)
        self.request_seconds = Histogram("playground_request_seconds", "A whole request",
                                         buckets=LATENCY, registry=r)
