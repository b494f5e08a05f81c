"""mod-svc's domain (modsvc/operands.py): the remainder and reading l and r."""

import math
import random
import unittest

from modsvc.operands import (
    INT64_MAX,
    INT64_MIN,
    OperandError,
    operand,
    parse_int64,
    query_value,
    truncated_remainder,
)


class TruncatedRemainderTest(unittest.TestCase):
    def test_takes_the_sign_of_the_dividend_as_cpp_does(self):
        table = [
            (17, 5, 2), (-17, 5, -2), (17, -5, 2), (-17, -5, -2),  # Python's % gives 2, 3, -3, -2
            (7, 3, 1), (0, 7, 0), (0, -7, 0), (5, 17, 5), (-5, 17, -5), (6, 3, 0), (-6, 3, 0),
        ]
        for l, r, expected in table:
            with self.subTest(l=l, r=r):
                self.assertEqual(truncated_remainder(l, r), expected)

    def test_the_64_bit_edges_all_fit(self):
        # INT64_MIN / -1 overflows (div-svc answers 422), but the remainder is exactly 0.
        self.assertEqual(truncated_remainder(INT64_MIN, -1), 0)
        self.assertEqual(truncated_remainder(INT64_MIN, 1), 0)
        self.assertEqual(truncated_remainder(INT64_MIN, INT64_MAX), -1)
        self.assertEqual(truncated_remainder(INT64_MAX, INT64_MIN), INT64_MAX)
        self.assertEqual(truncated_remainder(INT64_MIN, INT64_MIN), 0)
        self.assertEqual(truncated_remainder(INT64_MAX, 2), 1)
        self.assertEqual(truncated_remainder(INT64_MIN, 3), -2)

    def test_agrees_with_cs_fmod_where_doubles_are_exact(self):
        # C's fmod has the same definition (sign of the dividend); below 2^53 it is exact.
        rng = random.Random(11)
        for _ in range(20000):
            l = rng.randint(-(2**52), 2**52)
            r = rng.choice([rng.randint(-(2**52), 2**52), rng.randint(-50, 50)]) or 1
            self.assertEqual(truncated_remainder(l, r), int(math.fmod(l, r)), (l, r))

    def test_a_zero_divisor_is_422_division_by_zero(self):
        with self.assertRaises(OperandError) as caught:
            truncated_remainder(7, 0)
        self.assertEqual(caught.exception.status, 422)
        self.assertEqual(caught.exception.code, "division_by_zero")
        self.assertEqual(caught.exception.reason, "7 % 0: division by zero")


class ParseInt64Test(unittest.TestCase):
    def test_accepts_what_std_from_chars_accepts(self):
        table = {
            b"0": 0, b"-0": 0, b"007": 7, b"-42": -42,
            b"9223372036854775807": INT64_MAX, b"-9223372036854775808": INT64_MIN,
            b"0" * 5000 + b"1": 1,  # leading zeros are not magnitude
        }
        for raw, expected in table.items():
            with self.subTest(raw=raw[:30]):
                self.assertEqual(parse_int64("l", raw), expected)

    def test_refuses_what_python_would_but_cpp_would_not_accept(self):
        for raw in [b"", b"-", b"+1", b" 1", b"1 ", b"1_000", b"0x10", b"1e3", b"1.5", b"--1",
                    "١".encode(), "１".encode(), b"\x00", b"1\x00", b"\xff"]:
            with self.subTest(raw=raw):
                with self.assertRaises(OperandError) as caught:
                    parse_int64("l", raw)
                self.assertEqual(caught.exception.status, 400)
                self.assertEqual(caught.exception.code, "invalid_field")
                self.assertIn("is not an integer", caught.exception.reason)
                self.assertIn("query parameter 'l'", caught.exception.reason)

    def test_out_of_range_is_400_and_the_echo_is_clipped(self):
        for raw in [b"9223372036854775808", b"-9223372036854775809", b"9" * 5000, b"-" + b"1" * 5000]:
            with self.subTest(raw=raw[:30]):
                with self.assertRaises(OperandError) as caught:
                    parse_int64("r", raw)
                self.assertEqual(caught.exception.status, 400)
                self.assertIn("is out of range", caught.exception.reason)
                self.assertLess(len(caught.exception.reason), 120)
        with self.assertRaises(OperandError) as caught:
            parse_int64("r", b"9" * 100)
        self.assertEqual(
            caught.exception.reason, "query parameter 'r': '" + "9" * 64 + "...' is out of range"
        )


class QueryTest(unittest.TestCase):
    def test_decodes_the_one_occurrence(self):
        self.assertEqual(query_value(b"l=1&r=2", "r"), b"2")
        self.assertEqual(query_value(b"%6C=%2D5", "l"), b"-5")
        self.assertEqual(query_value(b"l=+5", "l"), b" 5")  # form encoding: '+' is a space
        self.assertEqual(query_value(b"x=1&l", "l"), b"")
        self.assertEqual(query_value(b"&&l=3&", "l"), b"3")
        self.assertIsNone(query_value(b"", "l"))
        self.assertIsNone(query_value(b"ll=1&L=2", "l"))

    def test_a_repeated_parameter_is_400_as_the_cpp_operators_answer(self):
        # Neither first nor last wins: whatever checked the request before us (a proxy, a
        # WAF) may have read the other copy. add-svc..div-svc answer exactly this.
        for query, name in [(b"l=1&l=2", "l"), (b"l=7&r=2&r=3", "r"), (b"l=1&%6C=1", "l"),
                            (b"l=7&r=2&l", "l")]:
            with self.subTest(query=query):
                with self.assertRaises(OperandError) as caught:
                    query_value(query, name)
                self.assertEqual(caught.exception.status, 400)
                self.assertEqual(caught.exception.code, "invalid_field")
                self.assertEqual(
                    caught.exception.reason, f"query parameter '{name}': given more than once"
                )

    def test_a_malformed_key_anywhere_is_400_as_the_cpp_operators_answer(self):
        with self.assertRaises(OperandError) as caught:
            query_value(b"l=2&%g=1", "l")
        self.assertEqual(caught.exception.reason, "query parameter '%g': malformed percent-escape")

    def test_malformed_escapes_are_400_naming_the_parameter(self):
        for query in [b"l=%zz", b"l=%4", b"l=%", b"l=1%"]:
            with self.subTest(query=query):
                with self.assertRaises(OperandError) as caught:
                    query_value(query, "l")
                self.assertEqual(caught.exception.status, 400)
                self.assertEqual(
                    caught.exception.reason, "query parameter 'l': malformed percent-escape"
                )
        with self.assertRaises(OperandError) as caught:
            query_value(b"%g=1&l=2", "l")
        self.assertEqual(caught.exception.reason, "query parameter '%g': malformed percent-escape")

    def test_a_missing_operand_is_400_missing_field(self):
        with self.assertRaises(OperandError) as caught:
            operand(b"l=1", "r")
        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(caught.exception.code, "missing_field")
        self.assertEqual(caught.exception.reason, "query parameter 'r' is required")
        self.assertEqual(operand(b"l=1&r=-2", "r"), -2)


if __name__ == "__main__":
    unittest.main()
