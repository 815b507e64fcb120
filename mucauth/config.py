"""Read tap.conf into the frozen dataclasses of :mod:`mucauth.settings`.

The file is read once, at start-up, and every mistake stops start-up with one line that names the
file, the section, the key and the reason (``tap.conf: [muc_http_auth] timeout: not a number:
'x'``). Unknown sections and keys are errors too: a misspelt ``enabled_for`` must not silently
open every room. Secret values (the component secret, the Authorization header) are never part
of a message, whatever is wrong with them.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.words.protocols.jabber import jid
from twisted.words.protocols.jabber.xmpp_stringprep import nameprep, nodeprep

from mucauth.conditions import ERROR_TYPES, RFC6120_CONDITIONS
from mucauth.settings import (
    ALLOW_PM,
    AdminAPISettings,
    ArchiveSettings,
    ComponentSettings,
    ErrorCondition,
    HTTPAuthSettings,
    LimitSettings,
    LogSettings,
    MetricsSettings,
    MUCSettings,
    RefusalSettings,
    RoomDefaults,
    RoomScope,
    Secret,
    Settings,
    StorageSettings,
)
from mucauth.text import clean_text
from mucauth.tls import CAFileError, load_ca_certificates

__all__ = ["ERROR_CONDITIONS", "ERROR_TYPES", "SECTIONS", "ConfigError", "load_settings"]

# A bare condition in deny_condition / failure_condition takes the type this table gives it.
ERROR_CONDITIONS = RFC6120_CONDITIONS

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

# Prosody's module reads "muc_http_auth_<key>"; operators may paste those names unchanged.
PROSODY_PREFIX = "muc_http_auth_"

# configparser treats its default section as values inherited by every other section; nothing
# in tap.conf should be inherited, so the default section gets a name no INI file can contain.
_NO_DEFAULT_SECTION = "\0"

# [muc] keys of earlier versions that are [rooms] defaults now: still read, from either place.
OLD_ROOM_KEYS = {
    "public_rooms": "public",
    "non_anonymous": "non_anonymous",
    "history_size": "history_length",
    "max_occupants": "max_users",
}

SECTIONS: Mapping[str, frozenset[str]] = {
    "component": frozenset(
        {
            "jid",
            "host",
            "port",
            "secret",
            "secret_file",
            "reconnect_max_delay",
            "standby",
            "standby_retry",
        }
    ),
    "muc_http_auth": frozenset(
        {
            "url",
            "timeout",
            "enabled_for",
            "disabled_for",
            "authorization_header",
            "authorization_header_file",
            "insecure",
            "ca_file",
            "deny_condition",
            "failure_condition",
            "show_reason",
            "authorize_registration",
            "pool_size",
            "cache_ttl",
            "recheck_interval",
            "down_after_failures",
            "probe_interval",
        }
    ),
    "muc": frozenset(
        f.name
        for f in dataclasses.fields(MUCSettings)
        if f.name not in ("rooms", "archive", "limits")
    )
    | frozenset(OLD_ROOM_KEYS),
    "archive": frozenset(f.name for f in dataclasses.fields(ArchiveSettings)),
    "limits": frozenset(f.name for f in dataclasses.fields(LimitSettings)),
    "rooms": frozenset(f.name for f in dataclasses.fields(RoomDefaults)),
    "log": frozenset({"level", "format"}),
    "metrics": frozenset({"port", "interface"}),
    "admin_api": frozenset({"port", "interface", "token", "token_file"}),
    "storage": frozenset(
        {"enabled", "path", "url", "password_file", "pool_size", "max_pending_writes"}
    ),
}
_REQUIREDSECTIONS = ("component", "muc_http_auth")

# Lower bounds for [muc] and [rooms] integers; a field missing here may be zero or more.
_MUC_MINIMUM = {
    "max_nick_length": 1,
    "max_room_name_length": 1,
    "max_pending_checks": 1,
    "max_pending_per_user": 1,
}

# [limits] lower bounds (other limits are at least 1): below these no ordinary stanza fits.
_LIMIT_MINIMUM = {"max_stanza_size": 16_384 + 1_024, "max_payload_size": 1_024, "max_depth": 4}
# Bytes kept between max_payload_size and max_stanza_size for what the service adds.
LIMIT_OVERHEAD = 16_384

T = TypeVar("T")


class ConfigError(Exception):
    """tap.conf cannot be used; ``str()`` is the one line an operator needs to fix it."""

    def __init__(
        self, filename: str, reason: str, section: str | None = None, key: str | None = None
    ) -> None:
        self.filename = filename
        self.section = section
        self.key = key
        self.reason = reason
        if section is None:
            where = ""
        elif key is None:
            where = f" [{section}]:"
        else:
            where = f" [{section}] {key}:"
        super().__init__(f"{filename}:{where} {reason}")


class _InvalidValueError(Exception):
    """A value is wrong; the caller knows which key it came from."""


def load_settings(path: FilePath[str] | str) -> Settings:
    """Read and check the configuration file at ``path``.

    Messages name the file as given (a relative ``tap.conf`` stays ``tap.conf``).
    Raises :class:`ConfigError` on the first mistake found.
    """
    filename = path.path if isinstance(path, FilePath) else os.fspath(path)
    return _Reader(filename, _parse(filename)).settings()


def _parse(filename: str) -> configparser.ConfigParser:
    try:
        with open(filename, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(filename, f"cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(filename, "not UTF-8 text") from None
    parser = configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
        default_section=_NO_DEFAULT_SECTION,
        strict=True,
    )
    try:
        parser.read_string(text, source=filename)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(filename, f"section given twice (line {e.lineno})", e.section) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(filename, f"given twice (line {e.lineno})", e.section, e.option) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            filename, f"line {e.lineno}: a [section] header must come first"
        ) from None
    except configparser.ParsingError as e:
        # The offending line is not quoted: it may hold a secret ("secret hunter2").
        lines = ", ".join(str(lineno) for lineno, _ in e.errors)
        raise ConfigError(
            filename, f"line {lines}: expected 'key = value' or '[section]'"
        ) from None
    except configparser.Error as e:
        raise ConfigError(filename, f"not an INI file: {type(e).__name__}") from None
    return parser


def _suggest(word: str, candidates: frozenset[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Section:
    """One section's keys, each read at most once and checked on the way."""

    def __init__(self, reader: _Reader, name: str, values: Mapping[str, str]) -> None:
        self.reader = reader
        self.name = name
        self.values = dict(values)

    def fail(self, key: str | None, reason: str) -> NoReturn:
        raise ConfigError(self.reader.filename, reason, self.name, key)

    def fail_pair(self, key: str, other: str, reason: str) -> NoReturn:
        """Two keys that disagree: name ``key`` if the file sets it, else ``other`` (a value
        left at its default is not the operator's mistake)."""
        self.fail(key if self.raw(key) is not None else other, reason)

    def raw(self, key: str) -> str | None:
        """The value as written, None when absent or empty (an empty value means the default)."""
        value = self.values.get(key)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def get(self, key: str, convert: Callable[[str], T], default: T) -> T:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return convert(value)
        except _InvalidValueError as e:
            self.fail(key, str(e))

    def require(self, key: str, convert: Callable[[str], T]) -> T:
        value = self.raw(key)
        if value is None:
            self.fail(key, "required")
        try:
            return convert(value)
        except _InvalidValueError as e:
            self.fail(key, str(e))

    def secret(self, key: str, *, required: bool) -> Secret | None:
        """``key`` or ``key_file``, exactly one; the value is never quoted in a message."""
        file_key = f"{key}_file"
        inline = self.raw(key)
        path = self.raw(file_key)
        if inline is not None and path is not None:
            self.fail(key, f"set either {key} or {file_key}, not both")
        if inline is not None:
            if "\n" in inline:
                self.fail(key, "must be a single line")
            return Secret(inline)
        if path is not None:
            return Secret(self._read_secret_file(file_key, path))
        if required:
            self.fail(key, f"required (set {key} or {file_key})")
        return None

    def _read_secret_file(self, key: str, path: str) -> str:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            self.fail(key, f"cannot read {path}: {e.strerror}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(key, f"{path} is not UTF-8 text")
        # Editors end files with a newline that nobody means as part of the secret.
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if text == "":
            self.fail(key, f"{path} is empty")
        if "\n" in text or "\r" in text:
            self.fail(key, f"{path} must hold a single line")
        return text


class _Reader:
    def __init__(self, filename: str, parser: configparser.ConfigParser) -> None:
        self.filename = filename
        self.parser = parser

    def section(self, name: str) -> _Section:
        values = self.parser[name] if self.parser.has_section(name) else {}
        return _Section(self, name, values)

    def settings(self) -> Settings:
        self._check_names()
        http_auth = self._unaliased(self.section("muc_http_auth"))
        return Settings(
            component=self._component(self.section("component")),
            http_auth=self._http_auth(http_auth),
            muc=self._muc(self.section("muc")),
            refusal=self._refusal(http_auth),
            log=self._log(self.section("log")),
            metrics=self._metrics(self.section("metrics")),
            storage=self._storage(self.section("storage")),
            admin_api=self._admin_api(self.section("admin_api")),
        )

    def _check_names(self) -> None:
        for name in self.parser.sections():
            if name not in SECTIONS:
                raise ConfigError(
                    self.filename,
                    "unknown section" + _suggest(name, frozenset(SECTIONS)),
                    name,
                )
            known = SECTIONS[name]
            for key in self.parser[name]:
                canonical = key
                if name == "muc_http_auth" and key.startswith(PROSODY_PREFIX):
                    canonical = key[len(PROSODY_PREFIX) :]
                if canonical not in known:
                    raise ConfigError(
                        self.filename, "unknown key" + _suggest(key, known), name, key
                    )
        for name in _REQUIREDSECTIONS:
            if not self.parser.has_section(name):
                raise ConfigError(self.filename, "section missing", name)

    def _unaliased(self, section: _Section) -> _Section:
        """Fold Prosody's ``muc_http_auth_<key>`` names onto ours; both spellings is an error."""
        values: dict[str, str] = {}
        for key, value in section.values.items():
            if key.startswith(PROSODY_PREFIX):
                canonical = key[len(PROSODY_PREFIX) :]
                if canonical in section.values:
                    section.fail(key, f"same setting as {canonical}: set only one of them")
                values[canonical] = value
            else:
                values[key] = value
        return _Section(self, section.name, values)

    def _component(self, s: _Section) -> ComponentSettings:
        defaults = _defaults(ComponentSettings)
        component_jid = s.require("jid", _component_jid)
        secret = s.secret("secret", required=True)
        assert secret is not None
        return ComponentSettings(
            jid=component_jid,
            secret=secret,
            host=s.get("host", _hostname, defaults["host"]),
            port=s.get("port", _port, defaults["port"]),
            reconnect_max_delay=s.get(
                "reconnect_max_delay", _positive_number, defaults["reconnect_max_delay"]
            ),
            standby=s.get("standby", _boolean, defaults["standby"]),
            standby_retry=s.get("standby_retry", _positive_number, defaults["standby_retry"]),
        )

    def _http_auth(self, s: _Section) -> HTTPAuthSettings:
        defaults = _defaults(HTTPAuthSettings)
        return HTTPAuthSettings(
            url=s.require("url", _http_url),
            timeout=s.get("timeout", _positive_number, defaults["timeout"]),
            scope=self._scope(s),
            authorization_header=s.secret("authorization_header", required=False),
            insecure=s.get("insecure", _boolean, defaults["insecure"]),
            ca_file=s.get("ca_file", _ca_file, defaults["ca_file"]),
            authorize_registration=s.get(
                "authorize_registration", _boolean, defaults["authorize_registration"]
            ),
            pool_size=s.get("pool_size", _integer_at_least(1), defaults["pool_size"]),
            cache_ttl=s.get("cache_ttl", _non_negative_number, defaults["cache_ttl"]),
            recheck_interval=s.get(
                "recheck_interval", _non_negative_number, defaults["recheck_interval"]
            ),
            down_after_failures=s.get(
                "down_after_failures", _integer_at_least(0), defaults["down_after_failures"]
            ),
            probe_interval=s.get("probe_interval", _positive_number, defaults["probe_interval"]),
        )

    def _refusal(self, s: _Section) -> RefusalSettings:
        """Read from [muc_http_auth], beside the gate's keys, as Prosody's module has them."""
        defaults = _defaults(RefusalSettings)
        return RefusalSettings(
            deny_condition=s.get("deny_condition", _condition, defaults["deny_condition"]),
            failure_condition=s.get("failure_condition", _condition, defaults["failure_condition"]),
            show_reason=s.get("show_reason", _boolean, defaults["show_reason"]),
        )

    def _scope(self, s: _Section) -> RoomScope:
        enabled = s.get("enabled_for", _room_map, None)
        disabled = s.get("disabled_for", _room_map, None)
        if enabled is not None and disabled is not None:
            s.fail("disabled_for", "set either enabled_for or disabled_for, not both")
        if enabled is not None:
            return RoomScope("enabled", enabled)
        if disabled is not None:
            return RoomScope("disabled", disabled)
        return RoomScope()

    def _muc(self, s: _Section) -> MUCSettings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(MUCSettings):
            if f.name not in ("rooms", "archive", "limits"):
                values[f.name] = s.get(f.name, _converter_for(f), _default_of(f))
        return MUCSettings(
            **values,
            rooms=self._rooms(self.section("rooms"), s),
            archive=self._archive(self.section("archive")),
            limits=self._limits(self.section("limits")),
        )

    def _limits(self, s: _Section) -> LimitSettings:
        values = {
            f.name: s.get(f.name, _integer_at_least(_LIMIT_MINIMUM.get(f.name, 1)), _default_of(f))
            for f in dataclasses.fields(LimitSettings)
        }
        limits = LimitSettings(**values)
        # What the service wraps around a payload (addresses, occupant and stanza ids, a delay
        # stamp, a MAM result's forward) must still fit: keep this much room beside the payload.
        room = limits.max_stanza_size - limits.max_payload_size
        if room < LIMIT_OVERHEAD:
            s.fail_pair(
                "max_payload_size",
                "max_stanza_size",
                f"max_stanza_size ({limits.max_stanza_size}) must exceed max_payload_size"
                f" ({limits.max_payload_size}) by at least {LIMIT_OVERHEAD} bytes",
            )
        return limits

    def _archive(self, s: _Section) -> ArchiveSettings:
        defaults = _defaults(ArchiveSettings)
        return ArchiveSettings(
            max_age=s.get("max_age", _duration, defaults["max_age"]),
            max_messages=s.get("max_messages", _integer_at_least(0), defaults["max_messages"]),
            prune_interval=s.get(
                "prune_interval", _duration_at_least(1), defaults["prune_interval"]
            ),
            max_page=s.get("max_page", _integer_at_least(1), defaults["max_page"]),
        )

    def _rooms(self, s: _Section, muc: _Section) -> RoomDefaults:
        fields = {f.name: f for f in dataclasses.fields(RoomDefaults)}
        values: dict[str, Any] = {}
        for old, name in OLD_ROOM_KEYS.items():
            if muc.raw(old) is None:
                continue
            if s.raw(name) is not None:
                muc.fail(old, f"same setting as [rooms] {name}: set only one of them")
            values[name] = muc.get(old, _converter_for(fields[name]), _default_of(fields[name]))
        for name, f in fields.items():
            convert: Callable[[str], Any]
            if name == "allow_pm":
                convert = _choice(ALLOW_PM)
            elif name == "tombstone_lifetime":
                convert = _duration  # 30d, 12h, like the other durations
            else:
                convert = _converter_for(f)
            values.setdefault(name, s.get(name, convert, _default_of(f)))
        rooms = RoomDefaults(**values)
        if rooms.history_length > rooms.max_history_length:
            s.fail_pair(
                "history_length",
                "max_history_length",
                f"history_length ({rooms.history_length}) is more than max_history_length"
                f" ({rooms.max_history_length})",
            )
        return rooms

    def _log(self, s: _Section) -> LogSettings:
        defaults = _defaults(LogSettings)
        return LogSettings(
            level=s.get("level", _choice(LOG_LEVELS), defaults["level"]),
            format=s.get("format", _choice(LOG_FORMATS), defaults["format"]),  # type: ignore[arg-type]
        )

    def _metrics(self, s: _Section) -> MetricsSettings:
        defaults = _defaults(MetricsSettings)
        return MetricsSettings(
            port=s.get("port", _port, defaults["port"]),
            interface=s.get("interface", _ip_address, defaults["interface"]),
        )

    def _admin_api(self, s: _Section) -> AdminAPISettings:
        defaults = _defaults(AdminAPISettings)
        port = s.get("port", _port, defaults["port"])
        token = s.secret("token", required=False)
        if port is None:
            for key in ("interface", "token", "token_file"):
                if s.raw(key) is not None:
                    s.fail(key, "the admin API is off without a port: set port, or remove this")
        elif token is None:
            s.fail("token", "the admin API needs a token (token or token_file)")
        elif len(token.reveal()) < 16:
            s.fail("token", "too short: use at least 16 characters (e.g. openssl rand -hex 24)")
        return AdminAPISettings(
            port=port,
            interface=s.get("interface", _ip_address, defaults["interface"]),
            token=token,
        )

    def _storage(self, s: _Section) -> StorageSettings:
        defaults = _defaults(StorageSettings)
        enabled = s.get("enabled", _boolean, defaults["enabled"])
        if not enabled:
            for key in ("path", "url", "password_file"):
                if s.raw(key) is not None:
                    s.fail(key, "enabled = no keeps no store: remove this key or the enabled line")
        url = s.get("url", _database_url, None)
        if url is not None and s.raw("path") is not None:
            s.fail("url", "set either path (SQLite) or url (PostgreSQL), not both")
        password = None
        if s.raw("password_file") is not None:
            if url is None:
                s.fail("password_file", "only for a PostgreSQL url")
            if urlsplit(url).password is not None:
                s.fail("password_file", "url has a password already: set only one of them")
            password = Secret(s._read_secret_file("password_file", s.raw("password_file") or ""))
        return StorageSettings(
            enabled=enabled,
            path=s.get("path", _text, defaults["path"]),
            url=url,
            password=password,
            pool_size=s.get("pool_size", _integer_at_least(1), defaults["pool_size"]),
            max_pending_writes=s.get(
                "max_pending_writes", _integer_at_least(1), defaults["max_pending_writes"]
            ),
        )


# --- defaults come from the dataclasses, so a default lives in one place ---


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: _default_of(f) for f in dataclasses.fields(cls)}


def _converter_for(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    """[muc] and [rooms] are read by field type, so a new field is configurable at once."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind == "bool":
        return _boolean
    if kind == "int":
        return _integer_at_least(_MUC_MINIMUM.get(f.name, 0))
    if kind == "float":
        return _non_negative_number
    if kind == "str":
        return _text
    raise TypeError(f"MUCSettings.{f.name}: no tap.conf reader for type {kind!r}")


# --- value converters: raise _InvalidValueError with the reason, never with a secret ---


def _text(value: str) -> str:
    if "\n" in value:
        raise _InvalidValueError("must be a single line")
    if clean_text(value) != value:
        # It may be written into stanzas (the service's name) and the log.
        raise _InvalidValueError("holds a control character")
    return value


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _InvalidValueError(f"not a boolean: {value!r} (use true or false)")


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _InvalidValueError(f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise _InvalidValueError(f"not a finite number: {value!r}")
    return number


def _positive_number(value: str) -> float:
    number = _number(value)
    if number <= 0:
        raise _InvalidValueError(f"must be a positive number of seconds, not {value}")
    return number


def _non_negative_number(value: str) -> float:
    number = _number(value)
    if number < 0:
        raise _InvalidValueError(f"must be zero or more, not {value}")
    return number


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(value: str) -> float:
    """Seconds, or a number with a unit: ``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise _InvalidValueError(
            f"not a duration: {value!r} (seconds, or a number with s, m, h, d or w)"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise _InvalidValueError(f"must be 0 or more, not {value!r}")
    return seconds


def _duration_at_least(minimum: float) -> Callable[[str], float]:
    def convert(value: str) -> float:
        seconds = _duration(value)
        if seconds < minimum:
            raise _InvalidValueError(f"must be at least {minimum:g} s, not {value!r}")
        return seconds

    return convert


def _integer(value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise _InvalidValueError(f"not an integer: {value!r}") from None


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        number = _integer(value)
        if number < minimum:
            raise _InvalidValueError(f"must be {minimum} or more, not {number}")
        return number

    return convert


def _port(value: str) -> int:
    number = _integer(value)
    if not 1 <= number <= 65535:
        raise _InvalidValueError(f"not a TCP port (1-65535): {number}")
    return number


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        lowered = value.lower()
        if lowered not in choices:
            raise _InvalidValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return lowered

    return convert


def _hostname(value: str) -> str:
    if any(c.isspace() for c in value):
        raise _InvalidValueError(f"not a host name or address: {value!r}")
    return value


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _InvalidValueError(f"not an IP address: {value!r}") from None


def _component_jid(value: str) -> jid.JID:
    try:
        user, host, resource = jid.parse(value)
    except Exception:  # the parser raises InvalidFormat, UnicodeError or IndexError
        raise _InvalidValueError(f"not a valid JID: {value!r}") from None
    if user is not None or resource is not None:
        raise _InvalidValueError(f"must be a bare domain like rooms.example.org, not {value!r}")
    return jid.internJID(host)


def _http_url(value: str) -> str:
    # The URL may carry credentials (user:password@host): describe it, never quote it.
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise _InvalidValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _InvalidValueError("must start with http:// or https://")
    if not parts.hostname:
        raise _InvalidValueError("has no host name")
    if any(c.isspace() for c in value):
        raise _InvalidValueError("must not contain spaces")
    return value


def _database_url(value: str) -> str:
    # Like _http_url: the URL may hold a password, so it is described, never quoted.
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise _InvalidValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise _InvalidValueError("must start with postgresql:// (for SQLite, set path instead)")
    if any(c.isspace() for c in value):
        raise _InvalidValueError("must not contain spaces")
    if not parts.path.strip("/"):
        raise _InvalidValueError("names no database (postgresql://user@host:port/database)")
    return value


def _ca_file(value: str) -> str:
    # Loaded now, as the TLS context will load it: a bad file must not get past start-up's
    # one-line check and fail later with an OpenSSL traceback.
    try:
        load_ca_certificates(value)
    except CAFileError as e:
        raise _InvalidValueError(str(e)) from None
    return value


def _condition(value: str) -> ErrorCondition:
    if "/" in value:
        type_, _, condition = value.partition("/")
        type_, condition = type_.strip().lower(), condition.strip().lower()
        if type_ not in ERROR_TYPES:
            choices = ", ".join(ERROR_TYPES)
            raise _InvalidValueError(f"unknown error type {type_!r} (use one of {choices})")
    else:
        condition = value.lower()
        type_ = ERROR_CONDITIONS.get(condition, "")
    if condition not in ERROR_CONDITIONS:
        raise _InvalidValueError(
            f"unknown error condition {condition!r} (RFC 6120 section 8.3.3)"
            + _suggest(condition, frozenset(ERROR_CONDITIONS))
        )
    return ErrorCondition(type_, condition)


def _room_map(value: str) -> dict[str, frozenset[str]]:
    """Room names for every host, or ``host: room room`` lines (``all`` = every host)."""
    if value.startswith("{"):
        raise _InvalidValueError(
            'write room names separated by spaces or commas, not a Lua table like {"room"}'
        )
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    keyed = [":" in line for line in lines]
    if not any(keyed):
        return {"all": _room_names(" ".join(lines))}
    if not all(keyed):
        raise _InvalidValueError("mixes plain room names with 'host: rooms' lines; use one form")
    result: dict[str, frozenset[str]] = {}
    for line in lines:
        host_text, _, rooms = line.partition(":")
        host = _user_host(host_text.strip())
        if host in result:
            raise _InvalidValueError(f"host {host!r} given twice")
        names = _room_names(rooms)
        if not names:
            raise _InvalidValueError(f"no room names after {host!r}")
        result[host] = names
    return result


def _room_names(text: str) -> frozenset[str]:
    names = set()
    for word in text.replace(",", " ").split():
        try:
            name = nodeprep.prepare(word)
        except Exception:  # UnicodeError from stringprep
            hint = " (give the node part only)" if "@" in word else ""
            raise _InvalidValueError(f"not a valid room name: {word!r}{hint}") from None
        if not name:
            raise _InvalidValueError(f"not a valid room name: {word!r}")
        names.add(name)
    return frozenset(names)


def _user_host(text: str) -> str:
    if text.lower() == "all":
        return "all"
    try:
        host = nameprep.prepare(text)
    except Exception:
        raise _InvalidValueError(f"not a valid host name: {text!r}") from None
    if not host or "." in (host[0], host[-1]) or ".." in host:
        raise _InvalidValueError(f"not a valid host name: {text!r}")
    return host
