"""Prometheus metrics in the text exposition format.

A handful of counters and one histogram do not justify a dependency in the
gateway image, so they are kept here by hand.
"""

from __future__ import annotations

from collections import defaultdict

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in pairs)
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self.tokens: dict[str, int] = defaultdict(int)
        self.rate_limited = 0
        self.filter_blocks = 0
        self.upstream_errors = 0
        self.active_streams = 0
        self._hist = [0] * (len(_BUCKETS) + 1)
        self._hist_sum = 0.0
        self._hist_count = 0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(("endpoint", endpoint), ("status", str(status)))] += 1
        self._hist_sum += seconds
        self._hist_count += 1
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self._hist[i] += 1
                return
        self._hist[-1] += 1

    def render(self) -> str:
        out = [
            "# HELP claudegate_requests_total Requests answered, by endpoint and status.",
            "# TYPE claudegate_requests_total counter",
        ]
        out += [f"claudegate_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items())]
        out += [
            "# HELP claudegate_tokens_total Tokens metered from upstream usage.",
            "# TYPE claudegate_tokens_total counter",
        ]
        out += [f'claudegate_tokens_total{{direction="{k}"}} {v}' for k, v in sorted(self.tokens.items())]
        for name, value, kind, text in (
            ("claudegate_rate_limited_total", self.rate_limited, "counter", "Requests refused by a gateway limit."),
            ("claudegate_filter_blocks_total", self.filter_blocks, "counter", "Requests blocked by a filter rule."),
            ("claudegate_upstream_errors_total", self.upstream_errors, "counter", "Upstream unreachable or timed out."),
            ("claudegate_active_streams", self.active_streams, "gauge", "Event streams being relayed now."),
        ):
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        out += [
            "# HELP claudegate_request_seconds Time from request to the end of the response.",
            "# TYPE claudegate_request_seconds histogram",
        ]
        running = 0
        for bound, count in zip(_BUCKETS, self._hist, strict=False):
            running += count
            out.append(f'claudegate_request_seconds_bucket{{le="{bound}"}} {running}')
        out.append(f'claudegate_request_seconds_bucket{{le="+Inf"}} {self._hist_count}')
        out.append(f"claudegate_request_seconds_sum {self._hist_sum:.6f}")
        out.append(f"claudegate_request_seconds_count {self._hist_count}")
        return "\n".join(out) + "\n"
