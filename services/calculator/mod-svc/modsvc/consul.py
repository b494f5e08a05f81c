"""mod-svc's registration in Consul, over the agent's HTTP API with urllib.

It registers what a coromesh C++ service registers (framework/src/service/service.cpp):
the `metrics` tag and Meta metrics_path/metrics_port that the Prometheus consul_sd job
selects on, and an HTTP check of /health that deregisters the instance after a minute
of failing. Address and port are the loopback ones: callers never dial them, they reach
the instance's coromesh-sidecar, whose connect-proxy registration points here.

The calls block (urllib); main.py runs them in a worker thread.
"""

import json
import urllib.error
import urllib.request

_TIMEOUT_SECONDS = 5.0


class ConsulError(Exception):
    pass


_MAX_TOKEN_BYTES = 4096


def read_token_file(path):
    """The token in `path`, trimmed; ValueError naming the path (never the contents)."""
    try:
        with open(path, "rb") as file:
            data = file.read(2 * _MAX_TOKEN_BYTES)
    except OSError as error:
        raise ValueError(f"token file {path}: {error.strerror}") from None
    token = data.strip()
    if len(data) == 2 * _MAX_TOKEN_BYTES or len(token) > _MAX_TOKEN_BYTES:
        raise ValueError(f"token file {path}: longer than {_MAX_TOKEN_BYTES} bytes")
    if not token:
        raise ValueError(f"token file {path}: empty")
    if any(byte < 0x21 or byte > 0x7E for byte in token):
        raise ValueError(f"token file {path}: holds a character that cannot be a token")
    return token.decode("ascii")


def _consul_duration(seconds):
    return f"{int(round(seconds * 1000))}ms"


class Registration:
    def __init__(self, settings, port):
        self.service_id = settings.instance_id or f"{settings.name}-{port}"
        self._base = f"http://{settings.consul}"
        self._token = settings.consul_token
        # Re-read at every call, so a rewritten file (a rotation) is in force at once; an
        # unusable file (mid-rewrite) keeps the last token read.
        self._token_file = settings.consul_token_file
        if self._token_file:
            self._token = read_token_file(self._token_file)
        tags = list(settings.tags)
        if "metrics" not in tags:
            tags.append("metrics")
        self.definition = {
            "ID": self.service_id,
            "Name": settings.name,
            "Tags": tags,
            "Address": "127.0.0.1",
            "Port": port,
            "Meta": {
                "metrics_path": "/metrics",
                "metrics_port": str(port),
                "operations": "mod",
                "language": "python",
            },
            "Check": {
                "HTTP": f"http://127.0.0.1:{port}/health",
                "Interval": _consul_duration(settings.check_interval),
                "Timeout": _consul_duration(min(settings.check_interval, 5.0)),
                "DeregisterCriticalServiceAfter": "1m",
            },
        }

    def register(self):
        self._call("PUT", "/v1/agent/service/register", self.definition)

    def deregister(self):
        self._call("PUT", f"/v1/agent/service/deregister/{self.service_id}")

    def is_registered(self):
        """Whether the agent still has this instance (it forgets after a restart)."""
        try:
            self._call("GET", f"/v1/agent/service/{self.service_id}")
        except ConsulError as error:
            if getattr(error, "status", None) == 404:
                return False
            raise
        return True

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method)
        if self._token_file:
            try:
                self._token = read_token_file(self._token_file)
            except ValueError:
                pass
        if self._token:
            request.add_header("X-Consul-Token", self._token)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(300).decode("utf-8", errors="replace").strip()
            failure = ConsulError(f"{method} {path}: HTTP {error.code} {detail}")
            failure.status = error.code
            raise failure from None
        except (urllib.error.URLError, OSError) as error:
            raise ConsulError(f"{method} {path}: {error}") from None
