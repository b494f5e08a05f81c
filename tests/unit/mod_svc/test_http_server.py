"""mod-svc over HTTP (modsvc/http_server.py and the routes of modsvc/main.py), in-process
on a free loopback port: the operator contract, the framework's error shapes and limits,
hostile input, metrics, shutdown."""

import http.client
import json
import unittest

from modsvc.http_server import Limits
from server_fixture import RunningServer, metric_value, read_until_closed

INT64_MIN = "-9223372036854775808"


class OperatorContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = RunningServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.close()

    def get(self, target, method="GET"):
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), response.read(), response
        finally:
            connection.close()

    def error(self, target):
        status, content_type, body, _ = self.get(target)
        self.assertEqual(content_type, "application/json")
        parsed = json.loads(body)
        self.assertEqual(set(parsed), {"error", "reason"})
        return status, parsed["error"], parsed["reason"]

    def test_answers_the_bare_remainder(self):
        for query, expected in [("l=17&r=5", b"2"), ("l=-17&r=5", b"-2"), ("l=17&r=-5", b"2"),
                                ("l=0&r=3", b"0"), (f"l={INT64_MIN}&r=-1", b"0"),
                                (f"l={INT64_MIN}&r=9223372036854775807", b"-1")]:
            with self.subTest(query=query):
                status, content_type, body, _ = self.get("/api/v1/execute?" + query)
                self.assertEqual((status, body), (200, expected))
                self.assertEqual(content_type, "text/plain; charset=utf-8")

    def test_a_zero_divisor_is_422(self):
        self.assertEqual(self.error("/api/v1/execute?l=7&r=0"),
                         (422, "division_by_zero", "7 % 0: division by zero"))

    def test_bad_operands_are_400_naming_the_parameter(self):
        table = [
            ("r=1", "missing_field", "query parameter 'l' is required"),
            ("l=1", "missing_field", "query parameter 'r' is required"),
            ("", "missing_field", "query parameter 'l' is required"),
            ("l=abc&r=1", "invalid_field", "query parameter 'l': 'abc' is not an integer"),
            ("l=1&r=1.5", "invalid_field", "query parameter 'r': '1.5' is not an integer"),
            ("l=9223372036854775808&r=1", "invalid_field",
             "query parameter 'l': '9223372036854775808' is out of range"),
            ("l=1&r=-9223372036854775809", "invalid_field",
             "query parameter 'r': '-9223372036854775809' is out of range"),
            ("l=%D9%A1&r=1", "invalid_field", "query parameter 'l': '\u0661' is not an integer"),
            ("l=1_0&r=1", "invalid_field", "query parameter 'l': '1_0' is not an integer"),
            ("l=+1&r=1", "invalid_field", "query parameter 'l': ' 1' is not an integer"),
            ("l=%zz&r=1", "invalid_field", "query parameter 'l': malformed percent-escape"),
        ]
        for query, code, reason in table:
            with self.subTest(query=query):
                self.assertEqual(self.error("/api/v1/execute?" + query), (400, code, reason))

    def test_huge_numbers_are_refused_quickly_with_a_clipped_echo(self):
        status, code, reason = self.error("/api/v1/execute?l=" + "7" * 6000 + "&r=1")
        self.assertEqual((status, code), (400, "invalid_field"))
        self.assertEqual(reason, "query parameter 'l': '" + "7" * 64 + "...' is out of range")

    def test_a_query_string_past_the_header_limit_is_431_and_the_connection_closes(self):
        answer = self.server.exchange(
            b"GET /api/v1/execute?l=1&r=1&pad=" + b"x" * 20000 + b" HTTP/1.1\r\nHost: m\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 "), answer[:100])
        self.assertIn(b"Connection: close", answer)
        self.assertIn(b'"error":"header_too_large"', answer)
        # Many small headers count too: the limit is on the whole head.
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"y" * 100) for i in range(100))
        answer = self.server.exchange(b"GET /health HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 "), answer[:100])
        self.assertEqual(self.get("/api/v1/execute?l=17&r=5")[2], b"2")  # still serving

    def test_unknown_paths_and_methods_get_the_frameworks_answers(self):
        self.assertEqual(self.error("/nope"), (404, "not_found", "no route for /nope"))
        status, _, body, response = self.get("/api/v1/execute?l=1&r=2", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(response.getheader("Allow"), "GET, HEAD")
        self.assertEqual(json.loads(body)["reason"], "POST is not allowed on /api/v1/execute")
        status, _, body, response = self.get("/api/v1/execute?l=17&r=5", method="HEAD")
        self.assertEqual((status, body, response.getheader("Content-Length")), (200, b"", "1"))

    def test_malformed_requests_are_400_and_close(self):
        for request in [b"GARBAGE\r\n\r\n", b"GET /health HTTP/2.0\r\n\r\n",
                        b"GET health HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.1\r\nNo-Colon\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nBad Name: x\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]:
            with self.subTest(request=request):
                answer = self.server.exchange(request)
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:100])
                self.assertIn(b"Connection: close", answer)

    def test_bodies_are_read_and_ignored_within_the_limit(self):
        ok = self.server.exchange(
            b"GET /api/v1/execute?l=9&r=4 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertTrue(ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\n1"), ok)
        too_big = self.server.exchange(b"GET /health HTTP/1.1\r\nContent-Length: 2000000000\r\n\r\n")
        self.assertTrue(too_big.startswith(b"HTTP/1.1 413 "), too_big[:100])
        chunked = self.server.exchange(
            b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        self.assertTrue(chunked.startswith(b"HTTP/1.1 501 "), chunked[:100])

    def test_keeps_connections_alive_and_answers_pipelined_requests_in_order(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /api/v1/execute?l=17&r=5 HTTP/1.1\r\nHost: m\r\n\r\n"
                         b"\r\nGET /api/v1/execute?l=-7&r=2 HTTP/1.1\r\nHost: m\r\n\r\n"
                         b"GET /api/v1/execute?l=1&r=0 HTTP/1.1\r\nConnection: close\r\n\r\n")
            answers = read_until_closed(sock).split(b"HTTP/1.1 ")[1:]
        self.assertEqual([a[:3] for a in answers], [b"200", b"200", b"422"])
        self.assertTrue(answers[0].endswith(b"\r\n\r\n2"))
        self.assertTrue(answers[1].endswith(b"\r\n\r\n-1"))
        # HTTP/1.0 closes unless asked not to.
        answer = self.server.exchange(b"GET /health HTTP/1.0\r\n\r\n")
        self.assertIn(b"Connection: close", answer)

    def test_an_http_1_0_keep_alive_is_confirmed_so_the_client_does_not_wait_for_a_close(self):
        # An HTTP/1.0 client keeps the connection only when the answer says keep-alive;
        # otherwise it reads until the close, which comes at the idle timeout. The C++
        # services answer the same request with Connection: keep-alive.
        with self.server.connect() as sock:
            sock.sendall(b"GET /api/v1/execute?l=7&r=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                         b"GET /api/v1/execute?l=8&r=3 HTTP/1.0\r\n\r\n")
            answers = read_until_closed(sock).split(b"HTTP/1.")[1:]
        self.assertEqual(len(answers), 2, answers)
        first_head = answers[0].split(b"\r\n\r\n")[0].lower().split(b"\r\n")
        self.assertIn(b"connection: keep-alive", first_head)
        self.assertTrue(answers[0].endswith(b"\r\n\r\n1"), answers[0])
        self.assertIn(b"Connection: close", answers[1])
        self.assertTrue(answers[1].endswith(b"\r\n\r\n2"), answers[1])

    def exchange_open(self, data):
        """Sends raw bytes on a new connection that stays open for writing, as a real
        client's does, and reads until the server closes."""
        with self.server.connect() as sock:
            sock.sendall(data)
            return read_until_closed(sock)

    def test_bare_lf_line_endings_are_400_and_close_as_in_the_cpp_services(self):
        # Was: the head was read up to CRLF CRLF, which never came: no answer until the
        # header timeout. The C++ services (Beast) refuse a bare LF at once with 400.
        for request in [b"GET /health HTTP/1.1\nHost: m\n\n",
                        b"GET /health HTTP/1.1\r\nHost: m\n\r\n",
                        b"GET /health HTTP/1.1\r\nHost: m\r\n\n"]:
            with self.subTest(request=request):
                answer = self.exchange_open(request)
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:100])
                self.assertIn(b"Connection: close", answer)
                self.assertIn(b'"error":"malformed_request"', answer)
                self.assertIn(b"bare LF", answer)

    def read_head(self, sock):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            head += chunk
        return head

    def test_expect_100_continue_is_answered_before_the_body(self):
        # Was: never answered, so a client waiting for 100 Continue before sending its
        # body (curl does, for a second) waited, and the server with it, for nothing.
        with self.server.connect() as sock:
            sock.sendall(b"GET /api/v1/execute?l=17&r=5 HTTP/1.1\r\nHost: m\r\n"
                         b"Expect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
            self.assertEqual(self.read_head(sock), b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"hello")
            head = self.read_head(sock)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertEqual(sock.recv(1), b"2")
            # The connection stays usable.
            sock.sendall(b"GET /api/v1/execute?l=9&r=4 HTTP/1.1\r\nConnection: close\r\n\r\n")
            self.assertTrue(read_until_closed(sock).endswith(b"\r\n\r\n1"))

    def test_expect_100_continue_to_a_request_refused_anyway_is_answered_without_the_body(self):
        # As the C++ services: no route (404) or a wrong method (405) is answered at once,
        # and the connection closed, since the body it did not ask for may still follow.
        for request, status in [(b"GET /nope HTTP/1.1\r\n", b"404"),
                                (b"POST /api/v1/execute?l=1&r=1 HTTP/1.1\r\n", b"405")]:
            with self.subTest(request=request):
                answer = self.exchange_open(
                    request + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                self.assertTrue(answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:100])
                self.assertNotIn(b"100 Continue", answer)
                self.assertIn(b"Connection: close", answer)

    def test_expect_100_continue_without_a_body_to_wait_for_gets_no_interim_answer(self):
        # HTTP/1.0 knows no 100 Continue; an empty body needs no go-ahead (C++ alike).
        answer = self.exchange_open(b"GET /api/v1/execute?l=17&r=5 HTTP/1.0\r\n"
                                    b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:100])
        answer = self.exchange_open(b"GET /api/v1/execute?l=17&r=5 HTTP/1.1\r\n"
                                    b"Expect: 100-continue\r\nContent-Length: 0\r\n"
                                    b"Connection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:100])
        self.assertTrue(answer.endswith(b"\r\n\r\n2"), answer)

    def test_health_and_metrics_count_requests_by_code(self):
        status, _, body, _ = self.get("/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "passing"}))
        series = 'coromesh_http_server_requests_total{service="mod-svc",operation="mod",code="422"}'
        before = metric_value(self.get("/metrics")[2].decode(), series)
        self.get("/api/v1/execute?l=1&r=0")
        status, content_type, body, _ = self.get("/metrics")
        exposition = body.decode()
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(metric_value(exposition, series), before + 1)
        self.assertIn("# TYPE coromesh_http_server_request_duration_seconds histogram", exposition)
        total = sum(
            metric_value(exposition, line.rpartition(" ")[0])
            for line in exposition.splitlines()
            if line.startswith('coromesh_http_server_requests_total{service="mod-svc",operation="mod"')
        )
        count = metric_value(exposition, 'coromesh_http_server_request_duration_seconds_count'
                                         '{service="mod-svc",operation="mod"}')
        inf = metric_value(exposition, 'coromesh_http_server_request_duration_seconds_bucket'
                                       '{service="mod-svc",operation="mod",le="+Inf"}')
        self.assertGreater(total, 0)
        self.assertEqual(count, total)
        self.assertEqual(inf, total)


class TimeoutsTest(unittest.TestCase):
    def setUp(self):
        self.server = RunningServer(Limits(header_timeout=0.3, idle_timeout=0.5))

    def tearDown(self):
        self.server.stop()
        self.server.close()

    def test_a_slow_request_head_is_cut_off_at_the_header_timeout(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost:")  # and nothing more
            self.assertEqual(read_until_closed(sock), b"")
        # The abandoned request is no longer counted in flight: only /metrics itself is.
        with self.server.connect() as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            exposition = read_until_closed(sock).decode()
        in_flight = 'coromesh_http_server_requests_in_flight{service="mod-svc"}'
        self.assertEqual(metric_value(exposition, in_flight), 1)

    def test_an_idle_keep_alive_connection_is_closed(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
            self.assertTrue(read_until_closed(sock).startswith(b"HTTP/1.1 200 "))


class ConnectionCapTest(unittest.TestCase):
    def setUp(self):
        # Default timeouts: the held connections must not be closed as idle meanwhile.
        self.server = RunningServer(Limits(max_connections=2))

    def tearDown(self):
        self.server.stop()
        self.server.close()

    def test_connections_past_the_limit_are_refused_with_503(self):
        held = [self.server.connect() for _ in range(2)]
        try:
            for sock in held:  # answered: the server has surely counted them
                sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
                self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 200 "))
            # Refused on accept, before its request is read: it need not send one.
            with self.server.connect() as third:
                answer = read_until_closed(third)
            self.assertTrue(answer.startswith(b"HTTP/1.1 503 "), answer[:100])
            self.assertIn(b"too_many_connections", answer)
        finally:
            for sock in held:
                sock.close()


class ShutdownTest(unittest.TestCase):
    def test_stop_closes_idle_keep_alive_connections_and_refuses_new_ones(self):
        server = RunningServer(Limits(idle_timeout=600))
        try:
            with server.connect() as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
                self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 200 "))
                self.assertEqual(server.stop(grace=600), 0)
                # Closed by stop(), not by the ten-minute idle timeout.
                self.assertEqual(read_until_closed(sock), b"")
            with self.assertRaises(ConnectionRefusedError):
                server.connect()
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
