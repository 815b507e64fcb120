"""Reading addresses and history wishes."""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from wokkel.generic import parseXml

from mucauth.muc import errors
from mucauth.muc.incoming import history_options, parse_address
from mucauth.settings import MUCSettings

S = MUCSettings(max_nick_length=10, max_room_name_length=10)


class ParseAddressTests(SynchronousTestCase):
    def test_service(self) -> None:
        a = parse_address("Rooms.Example.org", S)
        assert a is not None
        self.assertEqual(
            (a.service, a.is_service, a.reply_from),
            (JID("rooms.example.org"), True, "rooms.example.org"),
        )

    def test_room(self) -> None:
        a = parse_address("Room@rooms.example.org", S)
        assert a is not None
        self.assertTrue(a.is_room)
        self.assertEqual(a.room, JID("room@rooms.example.org"))
        self.assertRaises(errors.BadNick, a.require_nick)

    def test_occupant(self) -> None:
        a = parse_address("room@rooms.example.org/Al ice", S)
        assert a is not None
        self.assertEqual(
            (a.nick, a.nick_changed, a.reply_from),
            ("Al ice", False, "room@rooms.example.org/Al ice"),
        )

    def test_nick_with_slash_and_at(self) -> None:
        a = parse_address("room@rooms.example.org/a@b/c", S)
        assert a is not None
        self.assertEqual(a.nick, "a@b/c")

    def test_bad_room_answers_from_service(self) -> None:
        a = parse_address("a b@rooms.example.org/n", S)
        assert a is not None
        self.assertEqual(a.reply_from, "rooms.example.org")
        self.assertFalse(a.is_service)
        self.assertRaises(errors.BadRoomName, a.require_room)

    def test_bad_nick_answers_from_room(self) -> None:
        a = parse_address("room@rooms.example.org/" + "x" * 11, S)
        assert a is not None
        self.assertEqual(a.reply_from, "room@rooms.example.org")
        self.assertRaises(errors.NickNotAcceptable, a.require_nick)

    def test_bad_domain(self) -> None:
        self.assertIsNone(parse_address("room@bad domain/x", S))
        self.assertIsNone(parse_address("room@/x", S))


def join(history: str) -> object:
    return parseXml(
        "<presence xmlns='jabber:component:accept'>"
        f"<x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>"
    )


class HistoryOptionsTests(SynchronousTestCase):
    def test_none_requested(self) -> None:
        opts = history_options(parseXml("<presence xmlns='jabber:component:accept'/>"))
        self.assertEqual((opts.max_stanzas, opts.max_chars, opts.seconds, opts.since), (None,) * 4)

    def test_all(self) -> None:
        opts = history_options(
            join(
                "<history maxstanzas='5' maxchars='100' seconds='60' since='2024-05-01T12:00:00Z'/>"
            )  # type: ignore[arg-type]
        )
        self.assertEqual(
            (opts.max_stanzas, opts.max_chars, opts.seconds, opts.since),
            (5, 100, 60, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        )

    def test_naive_since_is_utc(self) -> None:
        opts = history_options(join("<history since='2024-05-01T12:00:00'/>"))  # type: ignore[arg-type]
        self.assertEqual(opts.since, datetime(2024, 5, 1, 12, tzinfo=UTC))

    def test_garbage_ignored(self) -> None:
        opts = history_options(
            join("<history maxstanzas='-3' maxchars='٣' seconds='9999999999999999' since='x'/>")  # type: ignore[arg-type]
        )
        self.assertEqual((opts.max_stanzas, opts.max_chars, opts.seconds, opts.since), (None,) * 4)

    def test_huge_number_capped(self) -> None:
        opts = history_options(join("<history maxstanzas='999999999999'/>"))  # type: ignore[arg-type]
        self.assertEqual(opts.max_stanzas, 10**9)
