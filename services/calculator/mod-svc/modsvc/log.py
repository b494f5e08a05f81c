"""One line per event on stderr, key=value, as the C++ services log (framework/log):

  ts=2026-11-29T04:46:55.423Z level=info event=http.listen address=127.0.0.1 port=23456
"""

import datetime
import sys

LEVELS = ("debug", "info", "warn", "error", "off")
_threshold = LEVELS.index("info")


def set_level(name):
    global _threshold
    _threshold = LEVELS.index(name)


def _quote(value):
    text = str(value).replace("\n", "\\n")
    if text and not any(c in text for c in ' "=\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log(level, event, **fields):
    if LEVELS.index(level) < _threshold:
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    ts = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    parts = [f"ts={ts}", f"level={level}", f"event={event}"]
    parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
    try:
        print(" ".join(parts), file=sys.stderr, flush=True)
    except OSError:
        pass  # a closed stderr must not take the service down
