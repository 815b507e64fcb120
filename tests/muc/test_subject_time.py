"""The subject keeps when and by whom it was set (issue 25): every joiner gets it with a
XEP-0203 delay stamp from the room, also after a restart; a room without a subject sends the
empty ``<subject/>`` without one."""

from __future__ import annotations

from twisted.words.xish import domish

from mucauth.store import MemoryRoomStore
from tests.muc.support import ALICE, BOB, CAROL, ROOM, START, message
from tests.muc.test_persistent import PersistentTestCase

NS_DELAY = "urn:xmpp:delay"


def subject_of(sent: list[domish.Element]) -> domish.Element:
    [subject] = [s for s in sent if s.name == "message" and s.subject is not None]
    return subject


def delays(stanza: domish.Element) -> list[domish.Element]:
    return list(stanza.elements(NS_DELAY, "delay"))


class SubjectTimeTests(PersistentTestCase):
    def set_subject(self, text: str, user: str = ALICE) -> None:
        self.receive(message(user, body=None, inner=f"<subject>{text}</subject>", id="s1"))
        self.take()

    def test_a_room_without_a_subject_sends_it_empty_without_a_stamp(self) -> None:
        subject = subject_of(self.enter(ALICE, "alice"))
        self.assertEqual((str(subject.subject), subject["from"]), ("", ROOM))
        self.assertEqual(delays(subject), [])

    def test_the_stamp_is_when_it_was_set_not_the_join(self) -> None:
        self.enter(ALICE, "alice")
        self.clock.advance(90)
        self.set_subject("Week 3")
        self.clock.advance(3600)
        subject = subject_of(self.enter(BOB, "bob"))
        self.assertEqual((str(subject.subject), subject["from"]), ("Week 3", f"{ROOM}/alice"))
        [delay] = delays(subject)
        self.assertEqual(delay["stamp"], "2024-05-01T12:01:30Z")
        self.assertEqual(delay["from"], ROOM)
        # after the subject, as Prosody sends it
        self.assertEqual([e.name for e in subject.elements()], ["subject", "delay"])

    def test_a_cleared_subject_has_no_stamp(self) -> None:
        self.enter(ALICE, "alice")
        self.set_subject("Week 3")
        self.set_subject("")
        subject = subject_of(self.enter(BOB, "bob"))
        self.assertEqual((str(subject.subject), subject["from"]), ("", ROOM))
        self.assertEqual(delays(subject), [])

    def test_the_stamp_and_the_nick_outlive_a_restart(self) -> None:
        self.enter(ALICE, "alice")
        self.make_persistent()
        self.clock.advance(30)
        self.set_subject("Week 3")
        self.assertEqual(self.stored(0).subject_time, START + 30)
        self.leave(ALICE, "alice")
        self.clock.advance(86400)
        self.restart()
        subject = subject_of(self.enter(CAROL, "carol"))
        self.assertEqual((str(subject.subject), subject["from"]), ("Week 3", f"{ROOM}/alice"))
        [delay] = delays(subject)
        self.assertEqual((delay["stamp"], delay["from"]), ("2024-05-01T12:00:30Z", ROOM))

    def test_a_subject_stored_without_its_time_goes_out_without_a_stamp(self) -> None:
        """Rows saved before the time was kept: no stamp rather than a made-up one."""
        self.store.save_room(
            ROOM, {}, name="Old", public=True, subject="Old topic", subject_nick="alice"
        )
        self.restart()
        subject = subject_of(self.enter(BOB, "bob"))
        self.assertEqual((str(subject.subject), subject["from"]), ("Old topic", f"{ROOM}/alice"))
        self.assertEqual(delays(subject), [])

    def make_store(self) -> MemoryRoomStore:
        return MemoryRoomStore(clock=lambda: START)
