"""The room archive in memory: stanza ids (XEP-0359), MAM queries and paging (XEP-0313), who may
read, moderated retraction (XEP-0425) and retention, on a MemoryRoomStore and a Clock."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc.archive import NS_MAM, NS_RSM, NS_STANZA_ID, stamp
from mucauth.muc.retention import Retention
from mucauth.muc.retraction import (
    NS_FASTEN,
    NS_MODERATE,
    NS_MODERATE_0,
    NS_RETRACT,
    NS_RETRACT_0,
)
from mucauth.settings import ArchiveSettings, MUCSettings, RoomDefaults
from mucauth.store import ArchiveQuery
from tests.muc.support import ALICE, BOB, CAROL, ROOM, START, error_of, iq, message
from tests.muc.test_persistent import PersistentTestCase, form

NS_FORWARD = "urn:xmpp:forward:0"
ADMIN = "http://jabber.org/protocol/muc#admin"
DISCO = "http://jabber.org/protocol/disco#info"
DISCO_INFO = f"<query xmlns='{DISCO}'/>"


def mam_query(*, fields: str = "", rsm: str = "", query_id: str = "q", flip: bool = False) -> str:
    x = ""
    if fields:
        x = (
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>{fields}</x>"
        )
    set_ = f"<set xmlns='{NS_RSM}'>{rsm}</set>" if rsm else ""
    flipped = "<flip-page/>" if flip else ""
    return f"<query xmlns='{NS_MAM}' queryid='{query_id}'>{x}{set_}{flipped}</query>"


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


def stanza_id(stanza: domish.Element) -> str | None:
    ids = [e for e in stanza.elements(NS_STANZA_ID, "stanza-id")]
    if not ids:
        return None
    assert len(ids) == 1, stanza.toXml()
    assert ids[0]["by"] == ROOM, stanza.toXml()
    return str(ids[0]["id"])


def inner_message(result: domish.Element) -> domish.Element:
    [res] = list(result.elements(NS_MAM, "result"))
    [forwarded] = list(res.elements(NS_FORWARD, "forwarded"))
    [inner] = [e for e in forwarded.elements() if e.name == "message"]
    return inner


class ArchiveTestCase(PersistentTestCase):
    settings = MUCSettings(
        rooms=RoomDefaults(persistent=True, logging=True, history_length=5, max_history_length=10),
        archive=ArchiveSettings(max_page=50),
    )

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")  # the owner: a moderator
        self.enter(BOB, "bob")
        self.ids: list[str] = []

    def post(self, count: int, user: str = ALICE, start: int = 0) -> list[str]:
        """``count`` messages a second apart; their archive ids."""
        ids = []
        for n in range(start, start + count):
            self.clock.advance(1)
            self.receive(message(user, body=f"post {n}", id=f"m{n}"))
            [echo] = [s for s in self.take() if s["to"] == ALICE]
            found = stanza_id(echo)
            assert found is not None
            ids.append(found)
        self.ids += ids
        return ids

    def query(
        self, payload: str, user: str = ALICE, *, type: str = "set"
    ) -> tuple[list[domish.Element], domish.Element]:
        """(result messages, the iq answer)."""
        self.receive(iq(user, ROOM, payload, type=type))
        return self.split(self.take())

    def split(self, sent: list[domish.Element]) -> tuple[list[domish.Element], domish.Element]:
        replies = [s for s in sent if s.name == "iq"]
        self.assertEqual(len(replies), 1, [s.toXml() for s in sent])
        results = [s for s in sent if s.name == "message"]
        return results, replies[0]

    def bodies(self, results: list[domish.Element]) -> list[str]:
        return [str(inner_message(r).body) for r in results]

    def fin(self, reply: domish.Element) -> tuple[bool, str | None, str | None]:
        self.assertEqual(reply["type"], "result", reply.toXml())
        [fin] = list(reply.elements(NS_MAM, "fin"))
        [rsm] = list(fin.elements(NS_RSM, "set"))
        first = [str(e) for e in rsm.elements(NS_RSM, "first")]
        last = [str(e) for e in rsm.elements(NS_RSM, "last")]
        return (
            fin.getAttribute("complete") == "true",
            first[0] if first else None,
            last[0] if last else None,
        )


class StanzaIdTests(ArchiveTestCase):
    def test_every_copy_carries_the_same_room_id_and_the_archive_has_it(self) -> None:
        self.receive(message(ALICE, body="hello", id="c1"))
        copies = self.take()
        self.assertEqual(len(copies), 2)
        ids = {stanza_id(c) for c in copies}
        self.assertEqual(len(ids), 1)
        [archive_id] = ids
        assert archive_id is not None
        self.assertEqual({c["id"] for c in copies}, {"c1"})  # the sender's own id kept
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery()))
        self.assertEqual([m.stanza_id for m in page.messages], [archive_id])

    def test_a_forged_stanza_id_is_dropped(self) -> None:
        forged = f"<stanza-id xmlns='{NS_STANZA_ID}' by='{ROOM}' id='forged'/>"
        origin = "<origin-id xmlns='urn:xmpp:sid:0' id='mine'/>"
        self.receive(message(ALICE, body="hello", inner=forged + origin))
        for copy in self.take():
            self.assertNotEqual(stanza_id(copy), "forged")
            self.assertEqual(len(list(copy.elements(NS_STANZA_ID, "origin-id"))), 1)

    def test_no_id_and_no_archive_when_the_room_does_not_log(self) -> None:
        reply = self.owner_set(form(enablelogging="0"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.receive(message(ALICE, body="off the record"))
        for copy in self.take():
            self.assertIsNone(stanza_id(copy))
        _results, reply = self.query(mam_query())
        self.assertEqual(error_of(reply), ("cancel", "service-unavailable"))
        self.receive(iq(BOB, ROOM, DISCO_INFO))
        features = {f["var"] for f in self.take_one().query.elements(DISCO, "feature")}
        self.assertNotIn(NS_MAM, features)

    def test_disco_offers_the_archive(self) -> None:
        self.receive(iq(BOB, ROOM, DISCO_INFO))
        features = {str(f["var"]) for f in self.take_one().query.elements(DISCO, "feature")}
        for feature in (NS_MAM, NS_MAM + "#extended", NS_STANZA_ID, NS_MODERATE, NS_MODERATE_0):
            self.assertIn(feature, features)

    def test_a_subject_change_is_not_archived(self) -> None:
        self.receive(message(ALICE, body=None, inner="<subject>Week 4</subject>"))
        for copy in self.take():
            self.assertIsNone(stanza_id(copy))
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery()))
        self.assertEqual(page.messages, ())


class PagingTests(ArchiveTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.post(12)

    def test_forward_pages_in_order_with_complete_on_the_last(self) -> None:
        seen: list[str] = []
        after = ""
        pages = 0
        while True:
            rsm = "<max>5</max>" + (f"<after>{after}</after>" if after else "")
            results, reply = self.query(mam_query(rsm=rsm, query_id=f"p{pages}"))
            complete, first, last = self.fin(reply)
            pages += 1
            seen += self.bodies(results)
            for r in results:
                [res] = list(r.elements(NS_MAM, "result"))
                self.assertEqual(res["queryid"], f"p{pages - 1}")
                self.assertEqual(r["from"], ROOM)
                self.assertEqual(r["to"], ALICE)
            self.assertEqual(first, results[0].result["id"])
            self.assertEqual(last, results[-1].result["id"])
            if complete:
                break
            assert last is not None
            after = last
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [f"post {n}" for n in range(12)])

    def test_a_result_is_the_message_as_the_room_sent_it_with_its_time(self) -> None:
        results, _ = self.query(mam_query(rsm="<max>1</max>"))
        [result] = results
        self.assertEqual(result.result["id"], self.ids[0])
        forwarded = result.result.forwarded
        [delay] = list(forwarded.elements("urn:xmpp:delay", "delay"))
        self.assertEqual(delay["stamp"], stamp(START + 1))
        inner = inner_message(result)
        self.assertEqual(inner.uri, "jabber:client")
        self.assertEqual(
            (inner["from"], inner["type"], inner["id"]), (f"{ROOM}/alice", "groupchat", "m0")
        )
        self.assertEqual(len(list(inner.elements("urn:xmpp:occupant-id:0", "occupant-id"))), 1)
        self.assertEqual(result.result.forwarded.message.toXml().count("post 0"), 1)

    def test_the_last_page_and_paging_back(self) -> None:
        results, reply = self.query(mam_query(rsm="<max>5</max><before/>"))
        self.assertEqual(self.bodies(results), [f"post {n}" for n in range(7, 12)])
        complete, first, _ = self.fin(reply)
        self.assertFalse(complete)
        results, reply = self.query(mam_query(rsm=f"<max>5</max><before>{first}</before>"))
        self.assertEqual(self.bodies(results), [f"post {n}" for n in range(2, 7)])
        complete, first, _ = self.fin(reply)
        results, reply = self.query(mam_query(rsm=f"<max>5</max><before>{first}</before>"))
        self.assertEqual(self.bodies(results), ["post 0", "post 1"])
        self.assertTrue(self.fin(reply)[0])

    def test_flip_page(self) -> None:
        results, _ = self.query(mam_query(rsm="<max>3</max>", flip=True))
        self.assertEqual(self.bodies(results), ["post 2", "post 1", "post 0"])

    def test_max_is_cut_to_max_page(self) -> None:
        self.post(50, start=12)
        results, reply = self.query(mam_query(rsm="<max>1000</max>"))
        self.assertEqual(len(results), 50)
        self.assertFalse(self.fin(reply)[0])

    def test_filters(self) -> None:
        self.post(2, user=BOB, start=12)
        cases = {
            "with an occupant": (field("with", f"{ROOM}/bob"), ["post 12", "post 13"]),
            "with a user (alice moderates)": (
                field("with", "bob@example.org"),
                ["post 12", "post 13"],
            ),
            "start": (
                field("start", stamp(START + 11)),
                ["post 10", "post 11", "post 12", "post 13"],
            ),
            "end": (field("end", stamp(START + 2)), ["post 0", "post 1"]),
            "start and end": (
                field("start", stamp(START + 3)) + field("end", stamp(START + 4)),
                ["post 2", "post 3"],
            ),
            "after-id": (field("after-id", self.ids[10]), ["post 11", "post 12", "post 13"]),
            "before-id": (field("before-id", self.ids[2]), ["post 0", "post 1"]),
            "ids": (field("ids", self.ids[3], self.ids[5]), ["post 3", "post 5"]),
        }
        for name, (fields, expected) in cases.items():
            results, reply = self.query(mam_query(fields=fields))
            self.assertEqual(self.bodies(results), expected, name)
            self.assertTrue(self.fin(reply)[0], name)

    def test_bad_queries(self) -> None:
        cases = {
            "unknown after": (mam_query(rsm="<after>nope</after>"), ("cancel", "item-not-found")),
            "unknown after-id": (
                mam_query(fields=field("after-id", "nope")),
                ("cancel", "item-not-found"),
            ),
            "bad start": (mam_query(fields=field("start", "yesterday")), ("modify", "bad-request")),
            "bad max": (mam_query(rsm="<max>ten</max>"), ("modify", "bad-request")),
            "index": (mam_query(rsm="<index>3</index>"), ("cancel", "feature-not-implemented")),
            "unknown field": (
                mam_query(fields=field("colour", "red")),
                ("cancel", "feature-not-implemented"),
            ),
            "after and before": (
                mam_query(rsm=f"<after>{self.ids[0]}</after><before/>"),
                ("modify", "bad-request"),
            ),
        }
        for name, (payload, expected) in cases.items():
            results, reply = self.query(payload)
            self.assertEqual(results, [], name)
            self.assertEqual(error_of(reply), expected, name)

    def test_a_real_jid_filter_needs_sight_of_real_jids(self) -> None:
        _results, reply = self.query(mam_query(fields=field("with", "alice@example.org")), user=BOB)
        self.assertEqual(error_of(reply), ("auth", "forbidden"))

    def test_the_form_and_the_metadata(self) -> None:
        _results, reply = self.query(f"<query xmlns='{NS_MAM}'/>", type="get")
        fields = {f["var"] for f in reply.query.x.elements("jabber:x:data", "field")}
        self.assertEqual(
            fields, {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}
        )
        _results, reply = self.query(f"<metadata xmlns='{NS_MAM}'/>", type="get")
        metadata = reply.metadata
        self.assertEqual(metadata.start["id"], self.ids[0])
        self.assertEqual(metadata.end["id"], self.ids[-1])
        self.assertEqual(metadata.end["timestamp"], stamp(START + 12))

    def test_an_archive_outlives_a_restart(self) -> None:
        self.restart()
        self.receive(iq(CAROL, ROOM, mam_query(rsm="<max>50</max>"), type="set"))
        self.assertEqual(self.take(), [])
        # carol is no occupant of the reloaded room: the gate is asked first
        [request] = self.auth.requests[-1:]
        self.assertEqual((request.action, request.nick), ("mam", ""))
        self.auth.allow()
        results, _reply = self.split(self.take())
        self.assertEqual(self.bodies(results), [f"post {n}" for n in range(12)])


class WhoMayReadTests(ArchiveTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.post(3)
        self.asked = len(self.auth.calls)

    def test_an_occupant_reads_without_a_check(self) -> None:
        results, _reply = self.query(mam_query(), user=BOB)
        self.assertEqual(len(results), 3)
        self.assertEqual(len(self.auth.calls), self.asked)

    def test_anyone_else_once_the_gate_allows(self) -> None:
        self.receive(iq(CAROL, ROOM, mam_query(), type="set"))
        self.assertEqual(self.take(), [])
        request = self.auth.requests[-1]
        self.assertEqual(
            (request.user, request.room, request.action, request.nick),
            (JID(CAROL), JID(ROOM), "mam", ""),
        )
        self.auth.allow()
        results, reply = self.split(self.take())
        self.assertEqual(len(results), 3)
        self.assertTrue(self.fin(reply)[0])

    def test_a_denied_user_is_refused(self) -> None:
        self.receive(iq(CAROL, ROOM, mam_query(), type="set"))
        self.auth.deny("not in the course")
        [reply] = self.take()
        self.assertEqual(reply.name, "iq")
        self.assertEqual(error_of(reply)[1], "forbidden")

    def test_an_outcast_is_refused_without_a_check(self) -> None:
        ban = (
            f"<query xmlns='{ADMIN}'><item affiliation='outcast' jid='carol@example.org'/></query>"
        )
        self.receive(iq(ALICE, ROOM, ban, type="set"))
        self.take()
        _results, reply = self.query(mam_query(), user=CAROL)
        self.assertEqual(error_of(reply), ("auth", "forbidden"))
        self.assertEqual(len(self.auth.calls), self.asked)

    def test_a_members_only_room_is_read_by_its_members(self) -> None:
        reply = self.owner_set(form(membersonly="1"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        _results, reply = self.query(mam_query(), user=CAROL)
        self.assertEqual(error_of(reply), ("auth", "forbidden"))
        self.assertEqual(len(self.auth.calls), self.asked)

    def test_no_room_no_archive(self) -> None:
        self.receive(iq(CAROL, "nowhere@rooms.example.org", mam_query(), type="set"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))


class RetractionTests(ArchiveTestCase):
    def moderate(self, archive_id: str, user: str = ALICE, reason: str = "spam") -> domish.Element:
        payload = (
            f"<moderate xmlns='{NS_MODERATE}' id='{archive_id}'>"
            f"<retract xmlns='{NS_RETRACT}'/><reason>{reason}</reason></moderate>"
        )
        self.receive(iq(user, ROOM, payload, type="set"))
        sent = self.take()
        [reply] = [s for s in sent if s.name == "iq"]
        self.notices = [s for s in sent if s.name == "message"]
        return reply

    def test_a_moderator_retracts_a_message(self) -> None:
        [target] = self.post(1, user=BOB)
        reply = self.moderate(target)
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual({n["to"] for n in self.notices}, {ALICE, BOB})
        for notice in self.notices:
            self.assertEqual((notice["from"], notice["type"]), (ROOM, "groupchat"))
            [retract] = list(notice.elements(NS_RETRACT, "retract"))
            self.assertEqual(retract["id"], target)
            [moderated] = list(retract.elements(NS_MODERATE, "moderated"))
            self.assertEqual(moderated["by"], f"{ROOM}/alice")
            self.assertEqual(str(retract.reason), "spam")
            self.assertIsNotNone(stanza_id(notice))
        # A joiner's history and the archive have the tombstone, not the text.
        sent = self.enter(CAROL, "carol")
        history = [s for s in sent if s.name == "message" and stanza_id(s) == target]
        [tombstone] = history
        self.assertIsNone(tombstone.body)
        self.assertEqual(len(list(tombstone.elements(NS_RETRACT, "retracted"))), 1)
        results, _ = self.query(mam_query())
        [first, notice] = results
        inner = inner_message(first)
        self.assertEqual(first.result["id"], target)
        self.assertIsNone(inner.body)
        [retracted] = list(inner.elements(NS_RETRACT, "retracted"))
        self.assertEqual(str(retracted.reason), "spam")
        self.assertEqual(inner["from"], f"{ROOM}/bob")
        self.assertEqual(inner_message(notice)["from"], ROOM)
        self.assertNotIn("post 0", first.toXml())

    def moderate_0(self, archive_id: str, user: str = ALICE, reason: str = "") -> domish.Element:
        """A version 0.2 request, as Gajim 1.7 sends it."""
        why = f"<reason>{reason}</reason>" if reason else ""
        payload = (
            f"<apply-to xmlns='{NS_FASTEN}' id='{archive_id}'>"
            f"<moderate xmlns='{NS_MODERATE_0}'><retract xmlns='{NS_RETRACT_0}'/>{why}</moderate>"
            "</apply-to>"
        )
        self.receive(iq(user, ROOM, payload, type="set"))
        sent = self.take()
        [reply] = [s for s in sent if s.name == "iq"]
        self.notices = [s for s in sent if s.name == "message"]
        return reply

    def assert_told_in_both_versions(self, target: str, reason: str) -> None:
        self.assertEqual({n["to"] for n in self.notices}, {ALICE, BOB})
        for notice in self.notices:
            [retract] = list(notice.elements(NS_RETRACT, "retract"))
            self.assertEqual(retract["id"], target)
            [apply_to] = list(notice.elements(NS_FASTEN, "apply-to"))
            self.assertEqual(apply_to["id"], target)
            [moderated] = list(apply_to.elements(NS_MODERATE_0, "moderated"))
            self.assertEqual(moderated["by"], f"{ROOM}/alice")
            self.assertEqual(len(list(moderated.elements(NS_RETRACT_0, "retract"))), 1)
            self.assertEqual(
                [str(r) for r in moderated.elements(NS_MODERATE_0, "reason")], [reason]
            )

    def test_a_version_0_2_request_retracts(self) -> None:
        [target] = self.post(1, user=BOB)
        reply = self.moderate_0(target, reason="Off topic")
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assert_told_in_both_versions(target, "Off topic")
        [notice] = [n for n in self.notices if n["to"] == BOB]
        [retract] = list(notice.elements(NS_RETRACT, "retract"))
        self.assertEqual(str(retract.reason), "Off topic")
        # The tombstone has both versions' too, for the archive's readers of each.
        sent = self.enter(CAROL, "carol")
        [tombstone] = [s for s in sent if s.name == "message" and stanza_id(s) == target]
        self.assertEqual(len(list(tombstone.elements(NS_RETRACT, "retracted"))), 1)
        [moderated] = list(tombstone.elements(NS_MODERATE_0, "moderated"))
        [retracted] = list(moderated.elements(NS_RETRACT_0, "retracted"))
        self.assertTrue(retracted.getAttribute("stamp"))
        self.assertIsNone(tombstone.body)

    def test_a_version_0_3_request_is_told_in_both_versions(self) -> None:
        [target] = self.post(1, user=BOB)
        self.moderate(target, reason="spam")
        self.assert_told_in_both_versions(target, "spam")

    def test_a_version_0_2_request_from_a_participant_is_refused(self) -> None:
        [target] = self.post(1)
        reply = self.moderate_0(target, user=BOB)
        self.assertEqual(error_of(reply), ("auth", "forbidden"))
        self.assertEqual(self.notices, [])

    def test_a_version_0_2_request_for_anything_but_retraction(self) -> None:
        [target] = self.post(1)
        self.receive(iq(ALICE, ROOM, f"<apply-to xmlns='{NS_FASTEN}' id='{target}'/>", type="set"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "feature-not-implemented"))

    def test_an_old_message_is_found_in_the_store(self) -> None:
        ids = self.post(8, user=BOB)  # history_length 5: the first three only in the store
        reply = self.moderate(ids[0])
        self.assertEqual(reply["type"], "result", reply.toXml())
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery(ids=(ids[0],))))
        [record] = page.messages
        self.assertIn("retracted", record.xml)
        self.assertNotIn("post 0", record.xml)
        self.assertEqual((record.nick, record.sender), ("bob", "bob@example.org"))

    def test_only_moderators_retract(self) -> None:
        [target] = self.post(1)
        reply = self.moderate(target, user=BOB)
        self.assertEqual(error_of(reply), ("auth", "forbidden"))
        self.assertEqual(self.notices, [])

    def test_an_unknown_message(self) -> None:
        reply = self.moderate("no-such-id")
        self.assertEqual(error_of(reply), ("cancel", "item-not-found"))


class RetentionTests(ArchiveTestCase):
    settings = MUCSettings(
        rooms=ArchiveTestCase.settings.rooms,
        archive=ArchiveSettings(max_age=3600, max_messages=4, prune_interval=600),
    )

    def test_old_and_surplus_messages_go_in_the_background(self) -> None:
        self.post(6)
        self.clock.advance(600)  # the first pass: max_messages
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery()))
        self.assertEqual(len(page.messages), 4)
        self.clock.advance(3600)  # every message is now older than max_age
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery()))
        self.assertEqual(page.messages, ())
        sent = self.enter(CAROL, "carol")
        self.assertEqual([s for s in sent if s.name == "message" and s.body is not None], [])

    def test_off_without_limits(self) -> None:
        retention = Retention(self.service._core)
        self.service._core.settings = MUCSettings(rooms=RoomDefaults(tombstone_lifetime=0))
        self.assertFalse(retention.active)

    def test_on_for_tombstones_alone(self) -> None:
        retention = Retention(self.service._core)
        self.service._core.settings = MUCSettings()  # tombstones for 30 days, no archive limit
        self.assertTrue(retention.active)
