"""The framework's HTTP server metrics, rendered in Prometheus text format 0.0.4.

Same families, labels and buckets as coromesh::metrics::HttpServerMetrics, so one
Prometheus job and one dashboard cover C++ and Python services alike:

  coromesh_http_server_requests_total{service,operation,code}          counter
  coromesh_http_server_requests_in_flight{service}                     gauge
  coromesh_http_server_request_duration_seconds{service,operation}     histogram
  process_start_time_seconds                                           gauge

Used from the event loop's thread only, so no locking.
"""

import bisect
import time

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value):
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels):
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class _Histogram:
    def __init__(self):
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds):
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds


class HttpServerMetrics:
    def __init__(self, service):
        self.service = service
        self.in_flight = 0
        self._requests = {}  # (operation, code) -> count
        self._durations = {}  # operation -> _Histogram
        self._start_time = time.time()

    def record(self, operation, code, seconds):
        key = (operation, str(code))
        self._requests[key] = self._requests.get(key, 0) + 1
        self._durations.setdefault(operation, _Histogram()).observe(seconds)

    def render(self):
        service = self.service
        lines = [
            "# HELP coromesh_http_server_requests_total HTTP requests served, by operation and"
            " response status code.",
            "# TYPE coromesh_http_server_requests_total counter",
        ]
        for (operation, code), count in sorted(self._requests.items()):
            labels = _labels(service=service, operation=operation, code=code)
            lines.append(f"coromesh_http_server_requests_total{labels} {count}")
        lines += [
            "# HELP coromesh_http_server_requests_in_flight HTTP requests currently being served.",
            "# TYPE coromesh_http_server_requests_in_flight gauge",
            f"coromesh_http_server_requests_in_flight{_labels(service=service)} {self.in_flight}",
            "# HELP coromesh_http_server_request_duration_seconds Time from a request's first byte"
            " to its response's last byte.",
            "# TYPE coromesh_http_server_request_duration_seconds histogram",
        ]
        family = "coromesh_http_server_request_duration_seconds"
        for operation, histogram in sorted(self._durations.items()):
            cumulative = 0
            for bound, count in zip(DURATION_BUCKETS + ("+Inf",), histogram.counts):
                cumulative += count
                labels = _labels(service=service, operation=operation, le=bound)
                lines.append(f"{family}_bucket{labels} {cumulative}")
            labels = _labels(service=service, operation=operation)
            lines.append(f"{family}_sum{labels} {histogram.total!r}")
            lines.append(f"{family}_count{labels} {cumulative}")
        lines += [
            "# HELP process_start_time_seconds Start time of the process since unix epoch in"
            " seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self._start_time!r}",
        ]
        return "\n".join(lines) + "\n"
