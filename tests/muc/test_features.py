"""Features plug in (``feature.py``): one registration routes a feature's iqs, lists its disco
features and adds its owner-form fields; only what the service routes is marked handled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from twisted.words.xish import domish
from twisted.words.xish.domish import Element
from wokkel import data_form
from wokkel.generic import parseXml

from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.owner import read_bool
from mucauth.muc.room import Room
from tests.muc.support import ALICE, ROOM, SERVICE, ServiceTestCase, error_of, iq

NS_TIME = "urn:xmpp:time"
INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
OWNER = "http://jabber.org/protocol/muc#owner"


class RoomTime(Feature):
    """A feature as small as one gets: the room's time (XEP-0202), a disco feature, a field."""

    def routes(self) -> Iterable[Route]:
        yield Route("room", "get", NS_TIME, self.on_time)

    def room_features(self, room: Room) -> Iterable[str]:
        return (NS_TIME,)

    def config_fields(self, room: Room) -> Iterable[data_form.Field]:
        yield data_form.Field("boolean", var="muc#roomconfig_moderatedroom_too", value=False)

    def read_config(self, values: Mapping[str, object]) -> Mapping[str, object]:
        if "moderatedroom_too" in values:
            return {"moderated": read_bool("moderatedroom_too", values["moderatedroom_too"])}
        return {}

    def on_time(self, request: IqRequest) -> domish.Element:
        answer = domish.Element((NS_TIME, "time"))
        answer.addElement("utc", content="2026-01-01T00:00:00Z")
        return answer


def features_of(reply: Element) -> set[str]:
    return {
        str(f["var"])
        for f in reply.query.elements("http://jabber.org/protocol/disco#info", "feature")
    }


class FeatureTests(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.service._iqs.add(RoomTime())  # the one registration line
        self.enter(ALICE, "alice")

    def test_its_iq_is_routed_to_it(self) -> None:
        self.receive(iq(ALICE, ROOM, f"<time xmlns='{NS_TIME}'/>"))
        reply = self.take_one()
        self.assertEqual(reply["type"], "result")
        self.assertEqual(str(reply.firstChildElement().utc), "2026-01-01T00:00:00Z")

    def test_a_type_it_did_not_register_is_not_routed(self) -> None:
        self.receive(iq(ALICE, ROOM, f"<time xmlns='{NS_TIME}'/>", type="set"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "service-unavailable"))

    def test_only_the_room_it_registered_for(self) -> None:
        self.receive(iq(ALICE, SERVICE, f"<time xmlns='{NS_TIME}'/>"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "service-unavailable"))

    def test_disco_lists_it(self) -> None:
        self.receive(iq(ALICE, ROOM, INFO))
        self.assertIn(NS_TIME, features_of(self.take_one()))

    def test_its_field_is_in_the_form_and_read_back(self) -> None:
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'/>"))
        form = data_form.Form.fromElement(self.take_one().query.x)
        self.assertIn("muc#roomconfig_moderatedroom_too", form.fields)
        submit = (
            f"<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='muc#roomconfig_moderatedroom_too'><value>1</value></field>"
            "</x></query>"
        )
        self.receive(iq(ALICE, ROOM, submit, type="set"))
        self.assertEqual(self.take()[-1]["type"], "result")
        self.assertTrue(self.service.rooms[next(iter(self.service.rooms))].config.moderated)

    def test_two_features_may_not_share_a_route(self) -> None:
        self.assertRaises(ValueError, self.service._iqs.add, RoomTime())


class HandledTests(ServiceTestCase):
    """Only routed stanzas are marked handled: others stay for the stream's other observers."""

    def stanza(self, xml: str) -> Element:
        element: Element = parseXml(xml)
        self.manager.stub.send(element)
        return element

    def test_a_get_is_handled(self) -> None:
        element = self.stanza(iq(ALICE, ROOM, INFO))
        self.assertTrue(getattr(element, "handled", False))

    def test_a_response_to_a_room_is_not(self) -> None:
        element = self.stanza(iq(ALICE, ROOM, "", type="result", id="unknown"))
        self.assertFalse(getattr(element, "handled", False))
        self.assertEqual(self.take(), [])

    def test_a_stanza_without_a_sender_is_not(self) -> None:
        element = self.stanza(f"<message to='{ROOM}' type='groupchat'><body>x</body></message>")
        self.assertFalse(getattr(element, "handled", False))
