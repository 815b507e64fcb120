"""tap.conf's [storage]: SQLite by default, PostgreSQL with url; mistakes are one line, and a
password (in url or its file) never shows."""

from __future__ import annotations

from mucauth.settings import Secret, StorageSettings
from mucauth.store import build_store, prepare_database
from tests.test_config import MINIMAL, ConfigTestCase

PASSWORD = "db-S3CRET-value"


class StorageConfigTests(ConfigTestCase):
    def storage(self, body: str) -> StorageSettings:
        return self.load(MINIMAL + "\n[storage]\n" + body).storage

    def storage_error(self, body: str) -> str:
        message = self.error(MINIMAL + "\n[storage]\n" + body)
        self.assertNotIn(PASSWORD, message)
        return message

    def test_a_file_without_the_section_keeps_rooms_in_sqlite(self) -> None:
        settings = self.load(MINIMAL).storage
        self.assertEqual(settings, StorageSettings())
        self.assertEqual((settings.kind, settings.path), ("sqlite", "mucauth.sqlite"))
        self.assertEqual(self.storage(""), StorageSettings())

    def test_no_store_at_all(self) -> None:
        settings = self.storage("enabled = no\n")
        self.assertFalse(settings.enabled)
        self.assertIsNone(build_store(settings))
        prepare_database(settings)  # nothing to open, nothing to fail

    def test_no_store_with_a_place_for_it(self) -> None:
        self.assertEqual(
            self.storage_error("enabled = no\npath = rooms.sqlite\n"),
            "tap.conf: [storage] path: enabled = no keeps no store: remove this key or the"
            " enabled line",
        )

    def test_path(self) -> None:
        settings = self.storage("path = /var/lib/mucauth/rooms.sqlite\n")
        self.assertEqual(settings.path, "/var/lib/mucauth/rooms.sqlite")

    def test_postgresql(self) -> None:
        settings = self.storage(
            "url = postgresql://mucauth@db.example.org:5433/rooms\npool_size = 8\n"
        )
        self.assertEqual(settings.kind, "postgresql")
        self.assertEqual(settings.url, "postgresql://mucauth@db.example.org:5433/rooms")
        self.assertEqual(settings.pool_size, 8)
        self.assertIsNone(settings.password)

    def test_password_file(self) -> None:
        path = self.directory() / "db.secret"
        path.write_text(PASSWORD + "\n")
        settings = self.storage(
            f"url = postgresql://mucauth@db.example.org/rooms\npassword_file = {path}\n"
        )
        self.assertEqual(settings.password, Secret(PASSWORD))
        self.assertNotIn(PASSWORD, repr(settings))

    def test_path_and_url(self) -> None:
        self.assertEqual(
            self.storage_error("path = rooms.sqlite\nurl = postgresql://h/rooms\n"),
            "tap.conf: [storage] url: set either path (SQLite) or url (PostgreSQL), not both",
        )

    def test_url_must_be_postgresql(self) -> None:
        self.assertEqual(
            self.storage_error(f"url = mysql://u:{PASSWORD}@h/rooms\n"),
            "tap.conf: [storage] url: must start with postgresql:// (for SQLite, set path instead)",
        )

    def test_url_must_name_a_database(self) -> None:
        self.assertEqual(
            self.storage_error(f"url = postgresql://u:{PASSWORD}@h:5432/\n"),
            "tap.conf: [storage] url: names no database (postgresql://user@host:port/database)",
        )

    def test_a_bad_url_is_described_not_quoted(self) -> None:
        self.assertEqual(
            self.storage_error(f"url = postgresql://u:{PASSWORD}@h:99999/rooms\n"),
            "tap.conf: [storage] url: not a valid URL",
        )

    def test_a_password_twice(self) -> None:
        path = self.directory() / "db.secret"
        path.write_text(PASSWORD)
        self.assertEqual(
            self.storage_error(
                f"url = postgresql://u:{PASSWORD}@h/rooms\npassword_file = {path}\n"
            ),
            "tap.conf: [storage] password_file: url has a password already: set only one of them",
        )

    def test_password_file_is_for_postgresql(self) -> None:
        self.assertEqual(
            self.storage_error("password_file = /etc/mucauth/db.secret\n"),
            "tap.conf: [storage] password_file: only for a PostgreSQL url",
        )

    def test_an_unreadable_password_file(self) -> None:
        self.assertEqual(
            self.storage_error("url = postgresql://h/rooms\npassword_file = /no/such/file\n"),
            "tap.conf: [storage] password_file: cannot read /no/such/file: "
            "No such file or directory",
        )

    def test_numbers(self) -> None:
        self.assertEqual(
            self.storage_error("pool_size = 0\n"),
            "tap.conf: [storage] pool_size: must be 1 or more, not 0",
        )
        self.assertEqual(
            self.storage_error("max_pending_writes = many\n"),
            "tap.conf: [storage] max_pending_writes: not an integer: 'many'",
        )
        self.assertEqual(self.storage("max_pending_writes = 10\n").max_pending_writes, 10)

    def test_unknown_key(self) -> None:
        self.assertEqual(
            self.storage_error("paht = rooms.sqlite\n"),
            "tap.conf: [storage] paht: unknown key (did you mean 'path'?)",
        )

    def test_section_name_is_suggested(self) -> None:
        self.assertEqual(
            self.error(MINIMAL + "\n[storge]\npath = x\n"),
            "tap.conf: [storge]: unknown section (did you mean 'storage'?)",
        )

    def test_the_effective_configuration_masks_the_password(self) -> None:
        from mucauth.effective import describe_settings

        settings = self.load(MINIMAL + f"\n[storage]\nurl = postgresql://u:{PASSWORD}@h/rooms\n")
        described = describe_settings(settings)["storage"]
        self.assertEqual(described["url"], "postgresql://***@h/rooms")
        self.assertNotIn(PASSWORD, repr(described))
