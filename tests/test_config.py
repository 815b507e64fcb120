"""tap.conf: every mistake is one line naming file, section, key and reason; secrets never show."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.config import ConfigError, load_settings
from mucauth.settings import (
    AdminAPISettings,
    ArchiveSettings,
    ErrorCondition,
    LimitSettings,
    MUCSettings,
    RoomDefaults,
    RoomScope,
    Secret,
    Settings,
)
from tests.support.certs import self_signed

COMPONENT_SECRET = "c0mp0nent-S3CRET-value"
AUTH_HEADER = "Bearer t0ken-S3CRET-value"

MINIMAL = f"""\
[component]
jid = rooms.example.org
secret = {COMPONENT_SECRET}

[muc_http_auth]
url = https://auth.example.org/muc/join
"""

REPO = Path(__file__).resolve().parent.parent


class ConfigTestCase(SynchronousTestCase):
    def directory(self) -> Path:
        """A fresh directory, removed afterwards (trial's mktemp litters the cwd under pytest)."""
        path = Path(tempfile.mkdtemp(prefix="mucauth-test-"))
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def write(self, text: str, name: str = "tap.conf") -> str:
        path = self.directory() / name
        path.write_text(text)
        return str(path)

    def load(self, text: str) -> Settings:
        return load_settings(self.write(text))

    def error(self, text: str) -> str:
        """The message for a bad file, with the file name shortened to ``tap.conf``."""
        path = self.write(text)
        with self.assertRaises(ConfigError) as caught:
            load_settings(path)
        message = str(caught.exception)
        self.assertTrue(message.startswith(path + ":"), message)
        self.assertNotIn("\n", message)
        self.assertNotIn(COMPONENT_SECRET, message)
        self.assertNotIn(AUTH_HEADER, message)
        self.assertNotIn("t0ken", message)
        return "tap.conf" + message[len(path) :]

    def with_(self, section: str, lines: str, base: str = MINIMAL) -> str:
        """``base`` with ``lines`` added to ``section`` (created at the end if absent)."""
        header = f"[{section}]\n"
        if header in base:
            return base.replace(header, header + lines.rstrip("\n") + "\n")
        return base + "\n" + header + lines.rstrip("\n") + "\n"

    def without(self, line_start: str, base: str = MINIMAL) -> str:
        return "".join(
            line for line in base.splitlines(keepends=True) if not line.startswith(line_start)
        )


class DefaultsTests(ConfigTestCase):
    def test_minimal_file_gives_defaults(self) -> None:
        settings = self.load(MINIMAL)
        self.assertEqual(settings.component.jid, JID("rooms.example.org"))
        self.assertEqual(settings.component.secret, Secret(COMPONENT_SECRET))
        self.assertEqual((settings.component.host, settings.component.port), ("127.0.0.1", 5347))
        self.assertEqual(settings.component.reconnect_max_delay, 30.0)
        auth = settings.http_auth
        self.assertEqual(auth.url, "https://auth.example.org/muc/join")
        self.assertEqual(auth.timeout, 5.0)
        self.assertEqual(auth.scope, RoomScope())
        self.assertIsNone(auth.authorization_header)
        refusal = settings.refusal
        self.assertEqual(refusal.deny_condition, ErrorCondition("cancel", "forbidden"))
        self.assertEqual(refusal.failure_condition, ErrorCondition("wait", "service-unavailable"))
        self.assertEqual(settings.muc, MUCSettings())
        self.assertEqual((settings.log.level, settings.log.format), ("info", "text"))
        self.assertIsNone(settings.metrics.port)

    def test_file_path_object_is_accepted(self) -> None:
        settings = load_settings(FilePath(self.write(MINIMAL)))
        self.assertEqual(settings.component.port, 5347)

    def test_inline_comments_with_semicolon_and_hash(self) -> None:
        settings = self.load(
            self.with_("muc_http_auth", "timeout = 2.5   ; seconds\ninsecure = yes  # dev only")
        )
        self.assertEqual(settings.http_auth.timeout, 2.5)
        self.assertTrue(settings.http_auth.insecure)

    def test_percent_signs_are_literal(self) -> None:
        url = "https://auth.example.org/join?x=%41"
        settings = self.load(MINIMAL.replace("https://auth.example.org/muc/join", url))
        self.assertEqual(settings.http_auth.url, url)

    def test_empty_value_means_default(self) -> None:
        settings = self.load(self.with_("muc_http_auth", "timeout =\nca_file =\nenabled_for ="))
        self.assertEqual(settings.http_auth.timeout, 5.0)
        self.assertIsNone(settings.http_auth.ca_file)
        self.assertEqual(settings.http_auth.scope.mode, "all")

    def test_every_setting_read(self) -> None:
        ca = self.write(self_signed().cert_pem.decode("ascii"), "ca.pem")
        text = f"""\
[component]
jid = Rooms.Example.ORG
host = xmpp.internal
port = 5348
secret = {COMPONENT_SECRET}
reconnect_max_delay = 10

[muc_http_auth]
url = http://127.0.0.1:8080/muc/join
timeout = 1.5
disabled_for = lobby
authorization_header = {AUTH_HEADER}
insecure = on
ca_file = {ca}
deny_condition = auth/not-authorized
failure_condition = cancel/internal-server-error
show_reason = 1
authorize_registration = TRUE
pool_size = 3
cache_ttl = 0.5

[muc]
service_name = School rooms
history_size = 0
public_rooms = no
non_anonymous = yes
max_nick_length = 20
max_room_name_length = 30
max_occupants = 50
max_pending_checks = 10
max_pending_per_user = 2
gate_nick_change = true

[log]
level = DEBUG
format = json

[metrics]
port = 9100
interface = ::1
"""
        s = self.load(text)
        self.assertEqual(s.component.jid, JID("rooms.example.org"))
        self.assertEqual(
            (s.component.host, s.component.port, s.component.reconnect_max_delay),
            ("xmpp.internal", 5348, 10.0),
        )
        auth = s.http_auth
        self.assertEqual(auth.timeout, 1.5)
        self.assertEqual(auth.scope, RoomScope("disabled", {"all": frozenset({"lobby"})}))
        self.assertEqual(auth.authorization_header, Secret(AUTH_HEADER))
        self.assertTrue(auth.insecure)
        self.assertEqual(auth.ca_file, ca)
        refusal = s.refusal
        self.assertEqual(refusal.deny_condition, ErrorCondition("auth", "not-authorized"))
        self.assertEqual(
            refusal.failure_condition, ErrorCondition("cancel", "internal-server-error")
        )
        self.assertTrue(refusal.show_reason)
        self.assertTrue(auth.authorize_registration)
        self.assertEqual((auth.pool_size, auth.cache_ttl), (3, 0.5))
        self.assertEqual(
            s.muc,
            MUCSettings(
                service_name="School rooms",
                max_nick_length=20,
                max_room_name_length=30,
                max_pending_checks=10,
                max_pending_per_user=2,
                gate_nick_change=True,
                # Spelt in [muc] there, as earlier versions did: [rooms] defaults now.
                rooms=RoomDefaults(
                    history_length=0, public=False, non_anonymous=True, max_users=50
                ),
            ),
        )
        self.assertEqual((s.log.level, s.log.format), ("debug", "json"))
        self.assertEqual((s.metrics.port, s.metrics.interface), (9100, "::1"))

    def test_booleans(self) -> None:
        for word, expected in [
            ("true", True),
            ("yes", True),
            ("on", True),
            ("1", True),
            ("false", False),
            ("no", False),
            ("off", False),
            ("0", False),
        ]:
            s = self.load(self.with_("muc_http_auth", f"show_reason = {word}"))
            self.assertIs(s.refusal.show_reason, expected, word)


class FileErrorTests(ConfigTestCase):
    def test_missing_file(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_settings("no/such/tap.conf")
        self.assertEqual(
            str(caught.exception), "no/such/tap.conf: cannot read: No such file or directory"
        )

    def test_directory_is_unreadable(self) -> None:
        path = str(self.directory())
        with self.assertRaises(ConfigError) as caught:
            load_settings(path)
        self.assertEqual(str(caught.exception), f"{path}: cannot read: Is a directory")

    def test_name_given_is_kept(self) -> None:
        directory = Path(self.write(MINIMAL)).parent
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        with self.assertRaises(ConfigError) as caught:
            load_settings("missing.conf")
        self.assertTrue(str(caught.exception).startswith("missing.conf: "))

    def test_not_utf8(self) -> None:
        path = self.write("")
        Path(path).write_bytes(b"[component]\njid = \xff\n")
        with self.assertRaises(ConfigError) as caught:
            load_settings(path)
        self.assertEqual(str(caught.exception), f"{path}: not UTF-8 text")

    def test_syntax_error_does_not_quote_the_line(self) -> None:
        text = MINIMAL.replace(f"secret = {COMPONENT_SECRET}", f"secret {COMPONENT_SECRET}")
        self.assertEqual(
            self.error(text), "tap.conf: line 3: expected 'key = value' or '[section]'"
        )

    def test_key_before_any_section(self) -> None:
        self.assertEqual(
            self.error("jid = x\n" + MINIMAL),
            "tap.conf: line 1: a [section] header must come first",
        )

    def test_duplicate_key(self) -> None:
        self.assertEqual(
            self.error(self.with_("component", "port = 1\nport = 2")),
            "tap.conf: [component] port: given twice (line 3)",
        )

    def test_duplicate_section(self) -> None:
        self.assertEqual(
            self.error(MINIMAL + "[component]\n"),
            "tap.conf: [component]: section given twice (line 7)",
        )

    def test_unknown_section(self) -> None:
        self.assertEqual(
            self.error(MINIMAL + "[muc_http_ath]\n"),
            "tap.conf: [muc_http_ath]: unknown section (did you mean 'muc_http_auth'?)",
        )

    def test_default_section_is_not_special(self) -> None:
        self.assertEqual(
            self.error(MINIMAL + "[DEFAULT]\ntimeout = 1\n"),
            "tap.conf: [DEFAULT]: unknown section",
        )

    def test_unknown_key_is_an_error(self) -> None:
        # A misspelt enabled_for would otherwise gate nothing or everything without a word.
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabeld_for = lobby")),
            "tap.conf: [muc_http_auth] enabeld_for: unknown key (did you mean 'enabled_for'?)",
        )

    def test_unknown_key_without_a_close_match(self) -> None:
        self.assertEqual(
            self.error(self.with_("log", "colour = blue")),
            "tap.conf: [log] colour: unknown key",
        )

    def test_missing_sections(self) -> None:
        self.assertEqual(
            self.error("[muc_http_auth]\nurl = http://x/\n"),
            "tap.conf: [component]: section missing",
        )
        self.assertEqual(
            self.error(f"[component]\njid = r.example\nsecret = {COMPONENT_SECRET}\n"),
            "tap.conf: [muc_http_auth]: section missing",
        )


class ComponentErrorTests(ConfigTestCase):
    def test_jid_required(self) -> None:
        self.assertEqual(self.error(self.without("jid")), "tap.conf: [component] jid: required")

    def test_jid_must_be_a_domain(self) -> None:
        for bad in ("muc@rooms.example.org", "rooms.example.org/x"):
            self.assertEqual(
                self.error(MINIMAL.replace("jid = rooms.example.org", f"jid = {bad}")),
                f"tap.conf: [component] jid: must be a bare domain like rooms.example.org,"
                f" not {bad!r}",
            )

    def test_jid_must_be_valid(self) -> None:
        for bad in ("rooms example.org", "rooms..example.org"):
            self.assertEqual(
                self.error(MINIMAL.replace("jid = rooms.example.org", f"jid = {bad}")),
                f"tap.conf: [component] jid: not a valid JID: {bad!r}",
            )

    def test_port_not_an_integer(self) -> None:
        self.assertEqual(
            self.error(self.with_("component", "port = 53a7")),
            "tap.conf: [component] port: not an integer: '53a7'",
        )

    def test_port_out_of_range(self) -> None:
        for bad in ("0", "65536", "-1"):
            self.assertEqual(
                self.error(self.with_("component", f"port = {bad}")),
                f"tap.conf: [component] port: not a TCP port (1-65535): {bad}",
            )

    def test_reconnect_max_delay_positive(self) -> None:
        self.assertEqual(
            self.error(self.with_("component", "reconnect_max_delay = 0")),
            "tap.conf: [component] reconnect_max_delay: must be a positive number of seconds,"
            " not 0",
        )

    def test_host_with_space(self) -> None:
        self.assertEqual(
            self.error(self.with_("component", "host = a b")),
            "tap.conf: [component] host: not a host name or address: 'a b'",
        )

    def test_secret_required(self) -> None:
        self.assertEqual(
            self.error(self.without("secret")),
            "tap.conf: [component] secret: required (set secret or secret_file)",
        )

    def test_secret_and_secret_file(self) -> None:
        path = self.write(COMPONENT_SECRET + "\n", "secret")
        self.assertEqual(
            self.error(self.with_("component", f"secret_file = {path}")),
            "tap.conf: [component] secret: set either secret or secret_file, not both",
        )

    def test_secret_file_strips_one_newline(self) -> None:
        path = self.write(COMPONENT_SECRET + "\n", "secret")
        settings = self.load(
            self.with_("component", f"secret_file = {path}", self.without("secret"))
        )
        self.assertEqual(settings.component.secret.reveal(), COMPONENT_SECRET)

    def test_secret_file_crlf(self) -> None:
        path = self.write("", "secret")
        Path(path).write_bytes(COMPONENT_SECRET.encode() + b"\r\n")
        settings = self.load(
            self.with_("component", f"secret_file = {path}", self.without("secret"))
        )
        self.assertEqual(settings.component.secret.reveal(), COMPONENT_SECRET)

    def test_secret_file_missing(self) -> None:
        text = self.with_("component", "secret_file = /no/such/file", self.without("secret"))
        self.assertEqual(
            self.error(text),
            "tap.conf: [component] secret_file: cannot read /no/such/file:"
            " No such file or directory",
        )

    def test_secret_file_empty(self) -> None:
        path = self.write("\n", "secret")
        text = self.with_("component", f"secret_file = {path}", self.without("secret"))
        self.assertEqual(self.error(text), f"tap.conf: [component] secret_file: {path} is empty")

    def test_secret_file_with_two_lines(self) -> None:
        path = self.write(COMPONENT_SECRET + "\nmore\n", "secret")
        text = self.with_("component", f"secret_file = {path}", self.without("secret"))
        self.assertEqual(
            self.error(text), f"tap.conf: [component] secret_file: {path} must hold a single line"
        )

    def test_multiline_secret(self) -> None:
        text = MINIMAL.replace(COMPONENT_SECRET, COMPONENT_SECRET + "\n  " + COMPONENT_SECRET)
        self.assertEqual(self.error(text), "tap.conf: [component] secret: must be a single line")

    def test_secret_is_masked_in_settings_repr(self) -> None:
        settings = self.load(self.with_("muc_http_auth", f"authorization_header = {AUTH_HEADER}"))
        self.assertNotIn(COMPONENT_SECRET, repr(settings))
        self.assertNotIn(AUTH_HEADER, repr(settings))


class HTTPAuthErrorTests(ConfigTestCase):
    def test_url_required(self) -> None:
        self.assertEqual(self.error(self.without("url")), "tap.conf: [muc_http_auth] url: required")

    def test_url_must_be_http(self) -> None:
        for bad in ("ftp://auth.example.org/", "auth.example.org/join", "file:///etc/passwd"):
            text = self.with_("muc_http_auth", f"url = {bad}", self.without("url"))
            self.assertEqual(
                self.error(text),
                "tap.conf: [muc_http_auth] url: must start with http:// or https://",
            )

    def test_url_needs_a_host(self) -> None:
        text = self.with_("muc_http_auth", "url = https:///join", self.without("url"))
        self.assertEqual(self.error(text), "tap.conf: [muc_http_auth] url: has no host name")

    def test_url_credentials_are_not_quoted(self) -> None:
        text = self.with_(
            "muc_http_auth",
            "url = https://u:pw-S3CRET@auth.example.org:99999/",
            self.without("url"),
        )
        message = self.error(text)
        self.assertEqual(message, "tap.conf: [muc_http_auth] url: not a valid URL")

    def test_timeout_not_a_number(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "timeout = x")),
            "tap.conf: [muc_http_auth] timeout: not a number: 'x'",
        )

    def test_timeout_must_be_positive(self) -> None:
        for bad in ("0", "-1"):
            self.assertEqual(
                self.error(self.with_("muc_http_auth", f"timeout = {bad}")),
                f"tap.conf: [muc_http_auth] timeout: must be a positive number of seconds,"
                f" not {bad}",
            )

    def test_timeout_must_be_finite(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "timeout = inf")),
            "tap.conf: [muc_http_auth] timeout: not a finite number: 'inf'",
        )

    def test_bad_boolean(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "insecure = maybe")),
            "tap.conf: [muc_http_auth] insecure: not a boolean: 'maybe' (use true or false)",
        )

    def test_authorization_header_from_file(self) -> None:
        path = self.write(AUTH_HEADER + "\n", "auth")
        s = self.load(self.with_("muc_http_auth", f"authorization_header_file = {path}"))
        self.assertEqual(s.http_auth.authorization_header, Secret(AUTH_HEADER))

    def test_authorization_header_and_file(self) -> None:
        path = self.write(AUTH_HEADER + "\n", "auth")
        text = self.with_(
            "muc_http_auth",
            f"authorization_header = {AUTH_HEADER}\nauthorization_header_file = {path}",
        )
        self.assertEqual(
            self.error(text),
            "tap.conf: [muc_http_auth] authorization_header: set either authorization_header"
            " or authorization_header_file, not both",
        )

    def test_authorization_header_file_unreadable(self) -> None:
        text = self.with_("muc_http_auth", "authorization_header_file = /no/such")
        self.assertEqual(
            self.error(text),
            "tap.conf: [muc_http_auth] authorization_header_file: cannot read /no/such:"
            " No such file or directory",
        )

    def test_authorization_header_file_empty(self) -> None:
        path = self.write("", "auth")
        text = self.with_("muc_http_auth", f"authorization_header_file = {path}")
        self.assertEqual(
            self.error(text),
            f"tap.conf: [muc_http_auth] authorization_header_file: {path} is empty",
        )

    def test_multiline_authorization_header(self) -> None:
        # A second line would be a second HTTP header.
        text = self.with_(
            "muc_http_auth", f"authorization_header = {AUTH_HEADER}\n  X-Evil: {AUTH_HEADER}"
        )
        self.assertEqual(
            self.error(text),
            "tap.conf: [muc_http_auth] authorization_header: must be a single line",
        )

    def test_ca_file_unreadable(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "ca_file = /no/such.pem")),
            "tap.conf: [muc_http_auth] ca_file: cannot read /no/such.pem:"
            " No such file or directory",
        )

    def test_ca_file_without_certificate(self) -> None:
        path = self.write("hello\n", "ca.pem")
        self.assertEqual(
            self.error(self.with_("muc_http_auth", f"ca_file = {path}")),
            f"tap.conf: [muc_http_auth] ca_file: {path} holds no PEM certificate",
        )

    def test_ca_file_holding_only_a_key(self) -> None:
        path = self.write(self_signed().key_pem.decode("ascii"), "key.pem")
        self.assertEqual(
            self.error(self.with_("muc_http_auth", f"ca_file = {path}")),
            f"tap.conf: [muc_http_auth] ca_file: {path} holds no PEM certificate",
        )

    def test_ca_file_is_a_directory(self) -> None:
        path = self.directory()
        self.assertEqual(
            self.error(self.with_("muc_http_auth", f"ca_file = {path}")),
            f"tap.conf: [muc_http_auth] ca_file: cannot read {path}: Is a directory",
        )

    def test_ca_file_with_garbage_between_the_markers(self) -> None:
        # Start-up would otherwise die later, building the TLS context, with an OpenSSL traceback.
        path = self.write("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", "ca.pem")
        self.assertEqual(
            self.error(self.with_("muc_http_auth", f"ca_file = {path}")),
            f"tap.conf: [muc_http_auth] ca_file: certificate 1 in {path} does not load",
        )

    def test_ca_file_with_a_bad_second_certificate(self) -> None:
        # Base64 that decodes, but to something that is not an X.509 certificate.
        bad = (
            "-----BEGIN CERTIFICATE-----\n"
            "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"
            "-----END CERTIFICATE-----\n"
        )
        path = self.write(self_signed().cert_pem.decode("ascii") + bad, "ca.pem")
        self.assertEqual(
            self.error(self.with_("muc_http_auth", f"ca_file = {path}")),
            f"tap.conf: [muc_http_auth] ca_file: certificate 2 in {path} does not load",
        )

    def test_ca_file_bundle(self) -> None:
        pem = self_signed().cert_pem + b"\n" + self_signed("other").cert_pem
        path = self.write(pem.decode("ascii"), "bundle.pem")
        settings = self.load(self.with_("muc_http_auth", f"ca_file = {path}"))
        self.assertEqual(settings.http_auth.ca_file, path)

    def test_negative_cache_ttl(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "cache_ttl = -1")),
            "tap.conf: [muc_http_auth] cache_ttl: must be zero or more, not -1",
        )

    def test_pool_size_at_least_one(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "pool_size = 0")),
            "tap.conf: [muc_http_auth] pool_size: must be 1 or more, not 0",
        )


class ConditionTests(ConfigTestCase):
    def condition(self, value: str) -> ErrorCondition:
        return self.load(
            self.with_("muc_http_auth", f"deny_condition = {value}")
        ).refusal.deny_condition

    def test_type_and_condition(self) -> None:
        self.assertEqual(
            self.condition("modify/not-acceptable"), ErrorCondition("modify", "not-acceptable")
        )
        self.assertEqual(self.condition("Cancel/Forbidden"), ErrorCondition("cancel", "forbidden"))

    def test_bare_condition_takes_rfc6120_type(self) -> None:
        self.assertEqual(self.condition("not-authorized"), ErrorCondition("auth", "not-authorized"))
        self.assertEqual(self.condition("forbidden"), ErrorCondition("auth", "forbidden"))
        self.assertEqual(
            self.condition("service-unavailable"), ErrorCondition("cancel", "service-unavailable")
        )
        self.assertEqual(
            self.condition("internal-server-error"),
            ErrorCondition("cancel", "internal-server-error"),
        )
        self.assertEqual(
            self.condition("resource-constraint"), ErrorCondition("wait", "resource-constraint")
        )

    def test_unknown_condition(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "deny_condition = cancel/forbiden")),
            "tap.conf: [muc_http_auth] deny_condition: unknown error condition 'forbiden'"
            " (RFC 6120 section 8.3.3) (did you mean 'forbidden'?)",
        )

    def test_unknown_type(self) -> None:
        self.assertEqual(
            self.error(
                self.with_("muc_http_auth", "failure_condition = later/service-unavailable")
            ),
            "tap.conf: [muc_http_auth] failure_condition: unknown error type 'later'"
            " (use one of auth, cancel, continue, modify, wait)",
        )


class AliasTests(ConfigTestCase):
    def test_prosody_names_are_accepted(self) -> None:
        text = f"""\
[component]
jid = rooms.example.org
secret = {COMPONENT_SECRET}

[muc_http_auth]
muc_http_auth_url = https://auth.example.org/join
muc_http_auth_enabled_for = teaparty
muc_http_auth_insecure = true
muc_http_auth_authorization_header = {AUTH_HEADER}
muc_http_auth_timeout = 3
"""
        auth = self.load(text).http_auth
        self.assertEqual(auth.url, "https://auth.example.org/join")
        self.assertEqual(auth.scope, RoomScope("enabled", {"all": frozenset({"teaparty"})}))
        self.assertTrue(auth.insecure)
        self.assertEqual(auth.authorization_header, Secret(AUTH_HEADER))
        self.assertEqual(auth.timeout, 3.0)

    def test_prosody_disabled_for(self) -> None:
        auth = self.load(self.with_("muc_http_auth", "muc_http_auth_disabled_for = a, b")).http_auth
        self.assertEqual(auth.scope, RoomScope("disabled", {"all": frozenset({"a", "b"})}))

    def test_alias_and_canonical_name_together(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "muc_http_auth_url = https://other/")),
            "tap.conf: [muc_http_auth] muc_http_auth_url: same setting as url:"
            " set only one of them",
        )

    def test_errors_name_the_key_as_written(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "muc_http_auth_timeout = soon")),
            "tap.conf: [muc_http_auth] timeout: not a number: 'soon'",
        )

    def test_unknown_prosody_name(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "muc_http_auth_colour = red")),
            "tap.conf: [muc_http_auth] muc_http_auth_colour: unknown key",
        )

    def test_aliases_only_in_muc_http_auth(self) -> None:
        self.assertEqual(
            self.error(self.with_("component", "muc_http_auth_url = https://x/")),
            "tap.conf: [component] muc_http_auth_url: unknown key",
        )


class ScopeTests(ConfigTestCase):
    def scope(self, key: str, value: str) -> RoomScope:
        return self.load(self.with_("muc_http_auth", f"{key} = {value}")).http_auth.scope

    def test_plain_names_apply_to_every_host(self) -> None:
        self.assertEqual(
            self.scope("enabled_for", "teaparty, Lobby  staff"),
            RoomScope("enabled", {"all": frozenset({"teaparty", "lobby", "staff"})}),
        )

    def test_plain_names_over_several_lines(self) -> None:
        self.assertEqual(
            self.scope("disabled_for", "\n  teaparty\n  lobby,staff"),
            RoomScope("disabled", {"all": frozenset({"teaparty", "lobby", "staff"})}),
        )

    def test_per_host_lines(self) -> None:
        self.assertEqual(
            self.scope(
                "enabled_for", "\n  school.example: maths, physics\n  all: staff\n  EX.org: x"
            ),
            RoomScope(
                "enabled",
                {
                    "school.example": frozenset({"maths", "physics"}),
                    "all": frozenset({"staff"}),
                    "ex.org": frozenset({"x"}),
                },
            ),
        )

    def test_both_enabled_and_disabled(self) -> None:
        text = self.with_("muc_http_auth", "enabled_for = a\ndisabled_for = b")
        self.assertEqual(
            self.error(text),
            "tap.conf: [muc_http_auth] disabled_for: set either enabled_for or disabled_for,"
            " not both",
        )

    def test_empty_one_does_not_count(self) -> None:
        self.assertEqual(
            self.load(
                self.with_("muc_http_auth", "enabled_for = a\ndisabled_for =")
            ).http_auth.scope,
            RoomScope("enabled", {"all": frozenset({"a"})}),
        )

    def test_full_room_jid_is_refused(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabled_for = teaparty@rooms.example.net")),
            "tap.conf: [muc_http_auth] enabled_for: not a valid room name:"
            " 'teaparty@rooms.example.net' (give the node part only)",
        )

    def test_lua_table_is_refused_with_a_hint(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", 'muc_http_auth_enabled_for = {"teaparty"}')),
            "tap.conf: [muc_http_auth] enabled_for: write room names separated by spaces or"
            ' commas, not a Lua table like {"room"}',
        )

    def test_mixed_forms(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabled_for = a\n  ex.org: b")),
            "tap.conf: [muc_http_auth] enabled_for: mixes plain room names with"
            " 'host: rooms' lines; use one form",
        )

    def test_bad_host(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabled_for =\n  bad host: a")),
            "tap.conf: [muc_http_auth] enabled_for: not a valid host name: 'bad host'",
        )

    def test_host_twice(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabled_for =\n  ex.org: a\n  EX.org: b")),
            "tap.conf: [muc_http_auth] enabled_for: host 'ex.org' given twice",
        )

    def test_host_without_rooms(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc_http_auth", "enabled_for =\n  ex.org:")),
            "tap.conf: [muc_http_auth] enabled_for: no room names after 'ex.org'",
        )


class MUCLogMetricsErrorTests(ConfigTestCase):
    def test_every_rooms_field_is_a_key(self) -> None:
        for f in dataclasses.fields(RoomDefaults):
            value = getattr(RoomDefaults(), f.name)
            written = str(value).lower() if isinstance(value, bool) else str(value)
            s = self.load(self.with_("rooms", f"{f.name} = {written}"))
            self.assertEqual(getattr(s.muc.rooms, f.name), value, f.name)

    def test_an_old_muc_key_and_its_rooms_key_together(self) -> None:
        text = self.with_("muc", "history_size = 3") + "\n[rooms]\nhistory_length = 4\n"
        self.assertEqual(
            self.error(text),
            "tap.conf: [muc] history_size: same setting as [rooms] history_length:"
            " set only one of them",
        )

    def test_rooms_history_above_its_maximum(self) -> None:
        self.assertEqual(
            self.error(self.with_("rooms", "history_length = 300")),
            "tap.conf: [rooms] history_length: history_length (300) is more than"
            " max_history_length (100)",
        )

    def test_rooms_allow_pm_is_a_choice(self) -> None:
        self.assertEqual(
            self.error(self.with_("rooms", "allow_pm = friends")),
            "tap.conf: [rooms] allow_pm: must be one of anyone, participants, moderators, none,"
            " not 'friends'",
        )

    def test_every_muc_field_is_a_key(self) -> None:
        for f in dataclasses.fields(MUCSettings):
            if f.name in ("rooms", "archive", "limits"):  # sections of their own
                continue
            # Each key is accepted with its own default written out.
            value = getattr(MUCSettings(), f.name)
            written = str(value).lower() if isinstance(value, bool) else str(value)
            s = self.load(self.with_("muc", f"{f.name} = {written}"))
            self.assertEqual(getattr(s.muc, f.name), value, f.name)

    def test_limits(self) -> None:
        self.assertEqual(self.load(MINIMAL).muc.limits, LimitSettings())
        for f in dataclasses.fields(LimitSettings):
            value = getattr(LimitSettings(), f.name)
            s = self.load(self.with_("limits", f"{f.name} = {value}"))
            self.assertEqual(getattr(s.muc.limits, f.name), value, f.name)
        s = self.load(self.with_("limits", "max_subject_length = 100\nmax_depth = 8"))
        self.assertEqual((s.muc.limits.max_subject_length, s.muc.limits.max_depth), (100, 8))

    def test_text_with_a_control_character(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc", "service_name = Rooms\x1b[2J")),
            "tap.conf: [muc] service_name: holds a control character",
        )

    def test_limits_errors(self) -> None:
        self.assertEqual(
            self.error(self.with_("limits", "max_depth = 0")),
            "tap.conf: [limits] max_depth: must be 4 or more, not 0",
        )
        self.assertEqual(
            self.error(self.with_("limits", "max_payload_size = 250000")),
            "tap.conf: [limits] max_payload_size: max_stanza_size (262144) must exceed"
            " max_payload_size (250000) by at least 16384 bytes",
        )
        self.assertIn(
            "tap.conf: [limits] max_stanza_size: ",
            self.error(self.with_("limits", "max_stanza_size = 70000")),
        )

    def test_admin_api(self) -> None:
        self.assertEqual(self.load(MINIMAL).admin_api, AdminAPISettings())
        token = "t" * 24
        s = self.load(self.with_("admin_api", f"port = 8089\ntoken = {token}"))
        self.assertEqual(s.admin_api, AdminAPISettings(port=8089, token=Secret(token)))
        path = self.write(token + "\n", "token")
        s = self.load(self.with_("admin_api", f"port = 8089\ninterface = ::1\ntoken_file = {path}"))
        self.assertEqual((s.admin_api.interface, s.admin_api.token), ("::1", Secret(token)))
        self.assertEqual(
            self.load(
                self.with_("muc_http_auth", "recheck_interval = 300")
            ).http_auth.recheck_interval,
            300,
        )

    def test_admin_api_errors(self) -> None:
        cases = {
            "port = 8089": "tap.conf: [admin_api] token: the admin API needs a token"
            " (token or token_file)",
            "port = 8089\ntoken = short": "tap.conf: [admin_api] token: too short: use at least"
            " 16 characters (e.g. openssl rand -hex 24)",
            "token = " + "t" * 20: "tap.conf: [admin_api] token: the admin API is off without a"
            " port: set port, or remove this",
            "port = 99999\ntoken = " + "t" * 20: "tap.conf: [admin_api] port: ",
        }
        for lines, expected in cases.items():
            message = self.error(self.with_("admin_api", lines))
            self.assertTrue(message.startswith(expected), message)
            self.assertNotIn("t" * 20, message)
        self.assertIn(
            "recheck_interval",
            self.error(self.with_("muc_http_auth", "recheck_interval = -5")),
        )

    def test_archive_keys(self) -> None:
        s = self.load(
            self.with_(
                "archive", "max_age = 30d\nmax_messages = 5000\nprune_interval = 15m\nmax_page = 50"
            )
        )
        self.assertEqual(
            s.muc.archive,
            ArchiveSettings(
                max_age=30 * 86400, max_messages=5000, prune_interval=900.0, max_page=50
            ),
        )
        self.assertEqual(self.load(self.with_("archive", "max_age = 90")).muc.archive.max_age, 90)
        self.assertEqual(self.load(MINIMAL).muc.archive, ArchiveSettings())

    def test_tombstone_lifetime_is_a_duration(self) -> None:
        def lifetime(line: str) -> float:
            return self.load(self.with_("rooms", line)).muc.rooms.tombstone_lifetime

        self.assertEqual(self.load(MINIMAL).muc.rooms.tombstone_lifetime, 30 * 86400)
        self.assertEqual(lifetime("tombstone_lifetime = 2w"), 14 * 86400)
        self.assertEqual(lifetime("tombstone_lifetime = 3600"), 3600)
        self.assertEqual(lifetime("tombstone_lifetime = 0"), 0)
        self.assertEqual(
            self.error(self.with_("rooms", "tombstone_lifetime = forever")),
            "tap.conf: [rooms] tombstone_lifetime: not a duration: 'forever'"
            " (seconds, or a number with s, m, h, d or w)",
        )

    def test_archive_errors(self) -> None:
        self.assertEqual(
            self.error(self.with_("archive", "max_age = a month")),
            "tap.conf: [archive] max_age: not a duration: 'a month'"
            " (seconds, or a number with s, m, h, d or w)",
        )
        self.assertEqual(
            self.error(self.with_("archive", "max_age = -1d")),
            "tap.conf: [archive] max_age: must be 0 or more, not '-1d'",
        )
        self.assertEqual(
            self.error(self.with_("archive", "prune_interval = 0")),
            "tap.conf: [archive] prune_interval: must be at least 1 s, not '0'",
        )
        self.assertEqual(
            self.error(self.with_("archive", "max_page = 0")),
            "tap.conf: [archive] max_page: must be 1 or more, not 0",
        )
        self.assertIn(
            "unknown key",
            self.error(self.with_("archive", "max_days = 3")),
        )

    def test_muc_integer(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc", "history_size = lots")),
            "tap.conf: [muc] history_size: not an integer: 'lots'",
        )
        self.assertEqual(
            self.error(self.with_("muc", "max_nick_length = 0")),
            "tap.conf: [muc] max_nick_length: must be 1 or more, not 0",
        )
        self.assertEqual(
            self.error(self.with_("muc", "max_occupants = -1")),
            "tap.conf: [muc] max_occupants: must be 0 or more, not -1",
        )

    def test_muc_boolean(self) -> None:
        self.assertEqual(
            self.error(self.with_("muc", "public_rooms = sometimes")),
            "tap.conf: [muc] public_rooms: not a boolean: 'sometimes' (use true or false)",
        )

    def test_log_level(self) -> None:
        for level in ("debug", "info", "warn", "error"):
            self.assertEqual(self.load(self.with_("log", f"level = {level}")).log.level, level)
        self.assertEqual(
            self.error(self.with_("log", "level = verbose")),
            "tap.conf: [log] level: must be one of debug, info, warn, error, not 'verbose'",
        )

    def test_log_format(self) -> None:
        self.assertEqual(
            self.error(self.with_("log", "format = xml")),
            "tap.conf: [log] format: must be one of text, json, not 'xml'",
        )

    def test_metrics_port(self) -> None:
        self.assertEqual(
            self.error(self.with_("metrics", "port = 70000")),
            "tap.conf: [metrics] port: not a TCP port (1-65535): 70000",
        )

    def test_metrics_interface(self) -> None:
        self.assertEqual(
            self.error(self.with_("metrics", "interface = localhost")),
            "tap.conf: [metrics] interface: not an IP address: 'localhost'",
        )


class ExampleFileTests(SynchronousTestCase):
    def test_repository_tap_conf_loads(self) -> None:
        settings = load_settings(str(REPO / "tap.conf"))
        self.assertEqual(settings.component.jid, JID("rooms.localhost"))
        self.assertEqual((settings.component.host, settings.component.port), ("127.0.0.1", 5347))
        self.assertEqual(settings.http_auth.url, "http://127.0.0.1:8080/muc/join")

    def test_repository_tap_conf_mentions_every_key(self) -> None:
        from mucauth.config import OLD_ROOM_KEYS, SECTIONS

        text = (REPO / "tap.conf").read_text()
        for section, keys in SECTIONS.items():
            self.assertIn(f"[{section}]", text)
            for key in keys:
                if section == "muc" and key in OLD_ROOM_KEYS:
                    continue  # earlier spellings of [rooms] keys: named in a comment
                self.assertRegex(text, rf"(?m)^[;#]?\s*{key}\s*=", f"[{section}] {key}")
