"""The operator's domain: reading l and r from a query string and the remainder.

Pure functions, no I/O. Every refusal is an OperandError carrying the HTTP status, the
error code and the reason, worded as the C++ services word them (framework/src/http/
binding.cpp), so a caller cannot tell which language answered.
"""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_ECHO_LIMIT = 64  # bytes of a hostile value echoed back in a reason, as the C++ side clips
_ASCII_DIGITS = frozenset(b"0123456789")
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


class OperandError(Exception):
    """A request the operator refuses: status 400 (bad operands) or 422 (no answer)."""

    def __init__(self, status, code, reason):
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def _clip(raw):
    """A value for an error reason: at most 64 bytes, undecodable bytes replaced."""
    text = raw[:_ECHO_LIMIT].decode("utf-8", errors="replace")
    return text + "..." if len(raw) > _ECHO_LIMIT else text


def percent_decode(raw):
    """Decodes a query-string component (bytes; '+' is a space); None if malformed."""
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == ord("%"):
            if i + 2 >= len(raw):
                return None  # a '%' needs two hex digits after it
            high, low = _HEX.get(raw[i + 1]), _HEX.get(raw[i + 2])
            if high is None or low is None:
                return None
            out.append(high * 16 + low)
            i += 3
            continue
        out.append(ord(" ") if byte == ord("+") else byte)
        i += 1
    return bytes(out)


def query_value(query, name):
    """The decoded value of the `name` parameter in `query` (bytes), else None.

    A key that appears without '=' has the empty value. As in the C++ binding (framework/
    src/http/binding.cpp), every key is read, and a parameter given twice is refused
    rather than first (or last) wins: whatever checked the request before us (a proxy, a
    WAF) may have read the other copy.
    """
    if not query:
        return None
    found = None
    for pair in query.split(b"&"):
        raw_key, _, raw_value = pair.partition(b"=")
        key = percent_decode(raw_key)
        if key is None:
            reason = f"query parameter '{_clip(raw_key)}': malformed percent-escape"
            raise OperandError(400, "invalid_field", reason)
        if key != name.encode():
            continue
        if found is not None:
            raise OperandError(
                400, "invalid_field", f"query parameter '{name}': given more than once"
            )
        found = percent_decode(raw_value)
        if found is None:
            raise OperandError(
                400, "invalid_field", f"query parameter '{name}': malformed percent-escape"
            )
    return found


def parse_int64(name, raw):
    """A signed 64-bit decimal integer as std::from_chars reads it: an optional '-', then
    ASCII digits only (no '+', spaces, underscores or other scripts' digits, all of which
    Python's int() would accept)."""
    digits = raw[1:] if raw.startswith(b"-") else raw
    if not digits or not all(b in _ASCII_DIGITS for b in digits):
        raise OperandError(
            400, "invalid_field", f"query parameter '{name}': '{_clip(raw)}' is not an integer"
        )
    significant = digits.lstrip(b"0")
    # Past 19 significant digits nothing fits, and int() of thousands of digits is both
    # slow and refused by Python (sys.int_info.str_digits_check_threshold).
    value = int(significant or b"0") if len(significant) <= 19 else None
    if value is not None and raw.startswith(b"-"):
        value = -value
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        raise OperandError(
            400, "invalid_field", f"query parameter '{name}': '{_clip(raw)}' is out of range"
        )
    return value


def operand(query, name):
    """The operand `name` ("l" or "r") of the query string (bytes)."""
    raw = query_value(query, name)
    if raw is None:
        raise OperandError(400, "missing_field", f"query parameter '{name}' is required")
    return parse_int64(name, raw)


def truncated_remainder(l, r):
    """l % r with C and C++ semantics: the quotient truncates toward zero, so the
    remainder takes the sign of the dividend: -7 % 2 == -1, 7 % -2 == 1. (Python's own %
    floors, giving 1 and -1.) |result| < |r|, so it always fits in 64 bits, including
    INT64_MIN % -1 == 0, which C++ leaves undefined (the quotient overflows) but whose
    remainder is exactly 0. r == 0 is refused with 422 division_by_zero, as div-svc does.
    """
    if r == 0:
        raise OperandError(422, "division_by_zero", f"{l} % {r}: division by zero")
    magnitude = abs(l) % abs(r)
    return -magnitude if l < 0 else magnitude
