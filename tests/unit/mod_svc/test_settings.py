"""mod-svc's settings (modsvc/settings.py): flags over environment over defaults, and
start-up errors that name the setting and where its value came from."""

import unittest

from modsvc.settings import ConfigError, parse


class SettingsTest(unittest.TestCase):
    def test_defaults_match_the_cpp_services(self):
        settings = parse([], environ={})
        self.assertEqual(settings.name, "mod-svc")
        self.assertEqual(settings.port, 0)
        self.assertEqual(settings.consul, "127.0.0.1:8500")
        self.assertTrue(settings.consul_register)
        self.assertEqual(settings.check_interval, 10.0)
        self.assertEqual(settings.idle_timeout, 60.0)

    def test_a_flag_beats_the_environment_which_beats_the_default(self):
        environ = {"COROMESH_PORT": "9001", "NOMAD_PORT_http": "9002", "CONSUL_HTTP_ADDR": "c:1"}
        self.assertEqual(parse([], environ).port, 9001)
        self.assertEqual(parse(["--port=9003"], environ).port, 9003)
        self.assertEqual(parse(["--port", "9004"], environ).port, 9004)
        self.assertEqual(parse([], {"NOMAD_PORT_http": "9002"}).port, 9002)
        self.assertEqual(parse([], environ).consul, "c:1")
        self.assertEqual(parse(["--consul", "http://127.0.0.1:8501"], environ).consul,
                         "127.0.0.1:8501")

    def test_booleans_durations_and_lists(self):
        self.assertFalse(parse(["--no-consul-register"], {}).consul_register)
        self.assertFalse(parse(["--consul-register=false"], {}).consul_register)
        self.assertTrue(parse(["--consul-register"], {"COROMESH_CONSUL_REGISTER": "0"}).consul_register)
        self.assertEqual(parse(["--shutdown-grace=250ms"], {}).shutdown_grace, 0.25)
        self.assertEqual(parse(["--tags=a, b,,c"], {}).tags, ["a", "b", "c"])

    def test_durations_are_read_as_the_cpp_services_read_them(self):
        # One deployment recipe fits both: what add-svc takes, mod-svc takes.
        self.assertEqual(parse(["--shutdown-grace=0"], {}).shutdown_grace, 0.0)
        self.assertEqual(parse([], {"COROMESH_SHUTDOWN_GRACE": "0"}).shutdown_grace, 0.0)
        self.assertEqual(parse(["--shutdown-grace=1m30s"], {}).shutdown_grace, 90.0)
        self.assertEqual(parse(["--shutdown-grace=1.5s"], {}).shutdown_grace, 1.5)
        self.assertAlmostEqual(parse(["--http-header-timeout=2500us"], {}).header_timeout, 0.0025)
        self.assertEqual(parse(["--http-idle-timeout=24h"], {}).idle_timeout, 86400.0)

    def test_durations_outside_the_cpp_bounds_stop_start_up(self):
        # A zero header or idle timeout would drop every request, a zero resync interval
        # would call Consul in a busy loop: refused as add-svc refuses them.
        cases = [
            ("--http-header-timeout=0s", "'0s' is out of range 1ms..1h"),
            ("--http-idle-timeout=0", "'0' is out of range 1ms..24h"),
            ("--consul-resync-interval=0s", "'0s' is out of range 50ms..1h"),
            ("--consul-check-interval=10ms", "'10ms' is out of range 100ms..1h"),
            ("--shutdown-grace=11m", "'11m' is out of range 0s..10m"),
            ("--shutdown-grace=5", "'5' has no unit (use e.g. 250ms, 5s, 1m)"),
        ]
        for arg, message in cases:
            with self.subTest(arg=arg):
                with self.assertRaises(ConfigError) as caught:
                    parse([arg], {})
                expected = arg.partition("=")[0] + " (flag): " + message
                self.assertEqual(str(caught.exception), expected)

    def test_errors_name_the_setting_and_the_source(self):
        cases = [
            (["--port=abc"], {}, "--port (flag): 'abc' is not a port number (0-65535)"),
            (["--port=70000"], {}, "--port (flag): '70000' is not a port number (0-65535)"),
            ([], {"NOMAD_PORT_http": "x"}, "--port (env NOMAD_PORT_http): 'x' is not a port"),
            (["--bogus=1"], {}, "--bogus (flag): unknown flag"),
            (["--bind=0.0.0.0"], {}, "--bind (flag): unknown flag"),
            (["port=1"], {}, "port=1 (flag): not a --flag"),
            (["--port"], {}, "--port (flag): a value is required"),
            (["--shutdown-grace=soon"], {}, "--shutdown-grace (flag): 'soon' is not a duration"),
            (["--consul=nowhere"], {}, "--consul (flag): 'nowhere' is not host:port"),
            (["--http-max-connections=0"], {}, "--http-max-connections (flag): '0' is not a"),
        ]
        for argv, environ, message in cases:
            with self.subTest(argv=argv, environ=environ):
                with self.assertRaises(ConfigError) as caught:
                    parse(argv, environ)
                self.assertTrue(str(caught.exception).startswith(message), str(caught.exception))

    def test_ids_that_go_into_consul_urls_are_checked_as_the_cpp_services_check_them(self):
        # Was: --instance-id (and --name, which the default id is made of) went unchecked
        # into /v1/agent/service/deregister/<id> and the other agent URLs.
        ok = parse(["--instance-id=mod-svc_1.a:b"], {})
        self.assertEqual(ok.instance_id, "mod-svc_1.a:b")
        self.assertEqual(parse([], {}).instance_id, "")  # default: <name>-<port>
        self.assertEqual(parse(["--instance-id=" + "x" * 128], {}).instance_id, "x" * 128)
        id_rule = "is not an instance id (up to 128 letters, digits and - _ . :)"
        name_rule = "is not a service name (1-63 letters, digits and inner hyphens)"
        cases = [
            (["--instance-id=a/b"], {}, f"--instance-id (flag): 'a/b' {id_rule}"),
            (["--instance-id=../agent"], {}, f"--instance-id (flag): '../agent' {id_rule}"),
            (["--instance-id=a?x=1"], {}, f"--instance-id (flag): 'a?x=1' {id_rule}"),
            (["--instance-id=a b"], {}, f"--instance-id (flag): 'a b' {id_rule}"),
            (["--instance-id=" + "x" * 129], {},
             f"--instance-id (flag): '{'x' * 80}'... (129 bytes) {id_rule}"),
            ([], {"COROMESH_INSTANCE_ID": "a\nb"},
             f"--instance-id (env COROMESH_INSTANCE_ID): 'a\\nb' {id_rule}"),
            (["--instance-id=\u00e9"], {}, f"--instance-id (flag): '\u00e9' {id_rule}"),
            (["--name=a/b"], {}, f"--name (flag): 'a/b' {name_rule}"),
            (["--name=-a"], {}, f"--name (flag): '-a' {name_rule}"),
            (["--name="], {}, f"--name (flag): '' {name_rule}"),
        ]
        for argv, environ, message in cases:
            with self.subTest(argv=argv, environ=environ):
                with self.assertRaises(ConfigError) as caught:
                    parse(argv, environ)
                self.assertEqual(str(caught.exception), message)
                self.assertNotIn("\n", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
