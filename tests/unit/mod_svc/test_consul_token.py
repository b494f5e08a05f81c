"""mod-svc's ACL token file (modsvc/consul.py): checked at start-up without quoting it,
re-read at every Consul call (rotation), the last good token kept while it is unusable.
The calls go to an in-process HTTP server standing in for the agent's answers."""

import http.server
import os
import tempfile
import threading
import unittest

from modsvc.consul import Registration
from modsvc.settings import ConfigError, parse


class _Recorder(http.server.BaseHTTPRequestHandler):
    tokens = []

    def do_PUT(self):  # noqa: N802 (the stdlib's name)
        _Recorder.tokens.append(self.headers.get("X-Consul-Token"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class ConsulTokenFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "token")
        self.server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        _Recorder.tokens = []

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        self.dir.cleanup()

    def write(self, text):
        with open(self.path, "w") as file:
            file.write(text)

    def test_the_file_is_read_at_every_call_and_an_unusable_one_keeps_the_last(self):
        self.write("first-secret\n")
        port = self.server.server_address[1]
        settings = parse([f"--consul=127.0.0.1:{port}", "--consul-token=ignored",
                          f"--consul-token-file={self.path}"], {})
        registration = Registration(settings, 9000)
        registration.register()
        self.write("second-secret")
        registration.register()
        self.write("")  # truncated mid-rewrite
        registration.register()
        self.assertEqual(_Recorder.tokens, ["first-secret", "second-secret", "second-secret"])

    def test_a_missing_or_bad_file_stops_start_up_without_quoting_it(self):
        with self.assertRaises(ConfigError) as missing:
            parse([f"--consul-token-file={self.path}"], {})
        self.assertIn(f"--consul-token-file (flag): token file {self.path}", str(missing.exception))
        self.write("part-of-a\x01secret")
        with self.assertRaises(ConfigError) as bad:
            parse([], {"CONSUL_HTTP_TOKEN_FILE": self.path})
        self.assertIn("(env CONSUL_HTTP_TOKEN_FILE)", str(bad.exception))
        self.assertNotIn("secret", str(bad.exception))


if __name__ == "__main__":
    unittest.main()
