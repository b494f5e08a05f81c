"""mod-svc's settings: flags, then environment variables, then defaults, named and
worded as the C++ binaries name them (`add-svc --help`), so one deployment recipe (and
Nomad's NOMAD_PORT_http) fits both. A bad value stops start-up with one line naming the
setting, exit status 2.

Not offered, on purpose: --bind (the service binds 127.0.0.1 only; its sidecar owns the
public port) and --upstreams (it calls nobody).
"""

import dataclasses
import os
import re
import sys

from modsvc.consul import read_token_file

# One term of a duration: a number, maybe with a fraction, and its unit. Longest unit
# names first, so "ms" is not read as "m" followed by garbage.
_DURATION_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|ms|s|m|h)")
_UNIT_NANOSECONDS = {
    "ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NANOSECONDS = 2**63 - 1


class ConfigError(Exception):
    pass


def _quote(text):
    """`text` quoted for a one-line message as the C++ services quote a value
    (framework/src/config/error.cpp, quote_value): control characters escaped, at most
    80 bytes shown."""
    raw = text.encode("utf-8", "surrogateescape")
    shown = min(len(raw), 80)
    while 0 < shown < len(raw) and raw[shown] & 0xC0 == 0x80:
        shown -= 1  # not in the middle of a UTF-8 sequence
    out = []
    for c in raw[:shown].decode("utf-8", "replace"):
        if c in "\n\r\t\\":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    quoted = "'" + "".join(out) + "'"
    return quoted + (f"... ({len(raw)} bytes)" if shown < len(raw) else "")


def _service_name(text):
    """The C++ services' rule (framework/src/config/service_config.cpp): the name ends up
    in DNS (<name>.service.consul), one RFC 1123 label."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", text, re.ASCII):
        raise ConfigError(
            f"{_quote(text)} is not a service name (1-63 letters, digits and inner hyphens)")
    return text


def _instance_id(text):
    """The C++ services' rule (service_config.cpp, check_instance_id): the id goes into
    the agent's URLs (/v1/agent/service/deregister/<id>), so nothing that needs escaping."""
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{0,128}", text, re.ASCII):
        raise ConfigError(
            f"{_quote(text)} is not an instance id (up to 128 letters, digits and - _ . :)")
    return text


def _port(text):
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise ConfigError(f"'{text}' is not a port number (0-65535)")
    return int(text)


def _nanoseconds(text):
    """A duration as the C++ services read it (framework/src/config/values.cpp,
    parse_duration): "0", or terms such as 250ms, 1.5s, 1m30s; units ns, us, ms, s, m, h."""
    if text == "0":
        return 0
    if text and all(c in "0123456789." for c in text):
        raise ConfigError(f"'{text}' has no unit (use e.g. 250ms, 5s, 1m)")
    bad = ConfigError(f"'{text}' is not a duration (use e.g. 250ms, 5s, 1m30s)")
    if not text:
        raise bad
    total = 0
    at = 0
    while at < len(text):
        term = _DURATION_TERM.match(text, at)
        if not term or (not term[1] and not term[2]):
            raise bad
        at = term.end()
        unit = _UNIT_NANOSECONDS[term[3]]
        fraction = (term[2] or "")[:18]
        total += int(term[1] or "0") * unit
        if fraction:
            total += round(int(fraction) * unit / 10 ** len(fraction))
        if total > _MAX_NANOSECONDS:
            raise ConfigError(f"'{text}' is not a duration (too long)")
    return total


def _duration_between(low, high, shown):
    """A parser of durations in [low, high] nanoseconds, in seconds; `shown` is the range
    as the C++ services word it ("1ms..1h")."""

    def parse_duration(text):
        value = _nanoseconds(text)
        if not low <= value <= high:
            raise ConfigError(f"'{text}' is out of range {shown}")
        return value / 1e9

    return parse_duration


_MS = 1_000_000
_S = 1_000 * _MS


def _positive_int(text):
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) == 0:
        raise ConfigError(f"'{text}' is not a positive integer")
    return int(text)


def _bool(text):
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"'{text}' is not a boolean (true/false)")


def _consul_address(text):
    address = text.removeprefix("http://")
    if not re.fullmatch(r"[A-Za-z0-9.\-]+:[0-9]{1,5}|\[[0-9A-Fa-f:]+\]:[0-9]{1,5}", address):
        raise ConfigError(f"'{text}' is not host:port")
    return address


def _log_level(text):
    if text not in ("debug", "info", "warn", "error", "off"):
        raise ConfigError(f"'{text}' is not one of debug, info, warn, error, off")
    return text


def _tags(text):
    return [tag for tag in (part.strip() for part in text.split(",")) if tag]


@dataclasses.dataclass(frozen=True)
class _Option:
    flag: str
    field: str
    parse: object
    default: str
    env: tuple
    help: str


def _token_file(text):
    if text:
        try:
            read_token_file(text)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return text


_OPTIONS = (
    _Option("name", "name", _service_name, "mod-svc", ("COROMESH_SERVICE_NAME",), "Service name in Consul."),
    _Option("instance-id", "instance_id", _instance_id, "", ("COROMESH_INSTANCE_ID",),
            "Consul service ID of this instance (default: <name>-<port>)."),
    _Option("port", "port", _port, "0", ("COROMESH_PORT", "NOMAD_PORT_http"),
            "TCP port to listen on, on 127.0.0.1; 0 picks a free one."),
    _Option("consul", "consul", _consul_address, "127.0.0.1:8500",
            ("COROMESH_CONSUL_ADDR", "CONSUL_HTTP_ADDR"),
            "Consul agent HTTP address (http:// optional)."),
    _Option("consul-register", "consul_register", _bool, "true", ("COROMESH_CONSUL_REGISTER",),
            "Register this instance with Consul (--no-consul-register: do not)."),
    _Option("consul-token", "consul_token", str, "", ("COROMESH_CONSUL_TOKEN", "CONSUL_HTTP_TOKEN"),
            "ACL token for the Consul agent."),
    _Option("consul-token-file", "consul_token_file", _token_file, "",
            ("COROMESH_CONSUL_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"),
            "File holding the ACL token, re-read at every Consul call; wins over --consul-token."),
    _Option("tags", "tags", _tags, "", ("COROMESH_TAGS",), "Extra Consul tags, comma-separated."),
    _Option("log-level", "log_level", _log_level, "info", ("COROMESH_LOG_LEVEL",),
            "Least severe level logged: debug, info, warn, error, off."),
    _Option("consul-check-interval", "check_interval",
            _duration_between(100 * _MS, 3600 * _S, "100ms..1h"), "10s",
            ("COROMESH_CONSUL_CHECK_INTERVAL",), "How often Consul calls the /health check."),
    _Option("consul-resync-interval", "resync_interval",
            _duration_between(50 * _MS, 3600 * _S, "50ms..1h"), "5s",
            ("COROMESH_CONSUL_RESYNC_INTERVAL",),
            "How often the registration is checked and redone if the agent lost it."),
    _Option("shutdown-grace", "shutdown_grace", _duration_between(0, 600 * _S, "0s..10m"), "10s",
            ("COROMESH_SHUTDOWN_GRACE",),
            "Time in-flight requests get to finish on shutdown."),
    _Option("http-header-timeout", "header_timeout",
            _duration_between(_MS, 3600 * _S, "1ms..1h"), "10s",
            ("COROMESH_HTTP_HEADER_TIMEOUT",), "Time a client has to send a request's headers."),
    _Option("http-idle-timeout", "idle_timeout", _duration_between(_MS, 24 * 3600 * _S, "1ms..24h"),
            "1m", ("COROMESH_HTTP_IDLE_TIMEOUT",),
            "Keep-alive connections idle this long are closed."),
    _Option("http-max-connections", "max_connections", _positive_int, "10000",
            ("COROMESH_HTTP_MAX_CONNECTIONS",), "Most connections served at once."),
)
_BY_FLAG = {option.flag: option for option in _OPTIONS}


@dataclasses.dataclass
class Settings:
    name: str
    instance_id: str
    port: int
    consul: str
    consul_register: bool
    consul_token: str
    consul_token_file: str
    tags: list
    log_level: str
    check_interval: float
    resync_interval: float
    shutdown_grace: float
    header_timeout: float
    idle_timeout: float
    max_connections: int


def usage():
    lines = [
        "Usage: mod-svc [--setting=value ...]",
        "",
        "Computes the remainder of two 64-bit integers (C semantics: the sign of the dividend).",
        "GET /api/v1/execute?l=<int>&r=<int>, /health, /metrics; reach it through",
        "coromesh-sidecar. Each setting comes from its --flag, else its environment",
        "variable, else its default.",
        "",
    ]
    for option in _OPTIONS:
        lines.append(f"  --{option.flag}=<value>")
        lines.append(f"      {option.help}")
        default = option.default or "(none)"
        lines.append(f"      env: {', '.join(option.env)}; default: {default}")
    lines += ["  --help, -h", "      Print this help and exit."]
    return "\n".join(lines)


def _flag_values(argv):
    """{flag: text} from --flag=value, --flag value, --flag / --no-flag (booleans)."""
    values = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, equals, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not name:
            raise ConfigError(f"{arg} (flag): not a --flag (--help lists all settings)")
        if name.startswith("no-") and name[3:] in _BY_FLAG and _BY_FLAG[name[3:]].parse is _bool:
            values[name[3:]] = "false"
            continue
        if name not in _BY_FLAG:
            raise ConfigError(f"--{name} (flag): unknown flag (--help lists all settings)")
        if not equals:
            if _BY_FLAG[name].parse is _bool:
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise ConfigError(f"--{name} (flag): a value is required")
        values[name] = value
    return values


def parse(argv, environ=None):
    """Settings from argv (without the program name) and environ. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    flags = _flag_values(argv)
    fields = {}
    for option in _OPTIONS:
        source, text = "default", option.default
        if option.flag in flags:
            source, text = "flag", flags[option.flag]
        else:
            for variable in option.env:
                if environ.get(variable):
                    source, text = f"env {variable}", environ[variable]
                    break
        try:
            fields[option.field] = option.parse(text)
        except ConfigError as error:
            raise ConfigError(f"--{option.flag} ({source}): {error}") from None
    return Settings(**fields)


def parse_or_exit(argv):
    if "--help" in argv or "-h" in argv:
        print(usage())
        sys.exit(0)
    try:
        return parse(argv)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
