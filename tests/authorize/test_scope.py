"""Which rooms the gate applies to."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mucauth.authorize.base import Decision, IJoinAuthorizer
from mucauth.authorize.scope import OUTSIDE_SCOPE, ScopedAuthorizer, scope_applies
from mucauth.settings import RoomScope
from tests.authorize.fakes import Counting, join


def enabled(**rooms: str) -> RoomScope:
    return RoomScope("enabled", {host: frozenset(names.split()) for host, names in rooms.items()})


def disabled(**rooms: str) -> RoomScope:
    return RoomScope("disabled", {host: frozenset(names.split()) for host, names in rooms.items()})


class ScopeAppliesTests(SynchronousTestCase):
    def test_default_gates_every_room(self) -> None:
        self.assertTrue(scope_applies(RoomScope(), "example.org", "anything"))

    def test_enabled_list_for_every_host(self) -> None:
        scope = enabled(all="physics chemistry")
        self.assertTrue(scope_applies(scope, "example.org", "physics"))
        self.assertTrue(scope_applies(scope, "other.net", "chemistry"))
        self.assertFalse(scope_applies(scope, "example.org", "lobby"))

    def test_disabled_list_for_every_host(self) -> None:
        scope = disabled(all="lobby")
        self.assertFalse(scope_applies(scope, "example.org", "lobby"))
        self.assertTrue(scope_applies(scope, "example.org", "physics"))

    def test_host_map(self) -> None:
        scope = RoomScope(
            "enabled",
            {"school.edu": frozenset({"exams"}), "all": frozenset({"staff"})},
        )
        self.assertTrue(scope_applies(scope, "school.edu", "exams"))
        self.assertFalse(scope_applies(scope, "other.net", "exams"))
        self.assertTrue(scope_applies(scope, "other.net", "staff"))
        self.assertTrue(scope_applies(scope, "school.edu", "staff"))

    def test_disabled_host_map(self) -> None:
        scope = RoomScope("disabled", {"guests.example.org": frozenset({"lobby"})})
        self.assertFalse(scope_applies(scope, "guests.example.org", "lobby"))
        self.assertTrue(scope_applies(scope, "example.org", "lobby"))

    def test_names_compare_after_nodeprep(self) -> None:
        scope = enabled(all="Physics ÜBUNG")
        self.assertTrue(scope_applies(scope, "example.org", "PHYSICS"))
        self.assertTrue(scope_applies(scope, "example.org", "übung"))
        self.assertFalse(scope_applies(scope, "example.org", "physics2"))

    def test_hosts_compare_case_insensitively(self) -> None:
        scope = RoomScope("enabled", {"School.EDU": frozenset({"exams"}), "ALL": frozenset()})
        self.assertTrue(scope_applies(scope, "school.edu", "exams"))

    def test_empty_enabled_list_gates_nothing(self) -> None:
        self.assertFalse(scope_applies(RoomScope("enabled", {}), "example.org", "physics"))


class ScopedAuthorizerTests(SynchronousTestCase):
    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, ScopedAuthorizer(Counting(), RoomScope()))

    def test_in_scope_asks_inner(self) -> None:
        inner = Counting(Decision.deny("no"))
        auth = ScopedAuthorizer(inner, enabled(all="physics"))
        decision = self.successResultOf(auth.authorize(join(room="Physics@rooms.example.org")))
        self.assertTrue(decision.is_denied)
        self.assertEqual(len(inner.requests), 1)

    def test_outside_scope_admits_without_asking(self) -> None:
        inner = Counting(Decision.deny("no"))
        auth = ScopedAuthorizer(inner, enabled(all="physics"))
        decision = self.successResultOf(auth.authorize(join(room="lobby@rooms.example.org")))
        self.assertEqual((decision.outcome, decision.reason), ("allow", OUTSIDE_SCOPE))
        self.assertEqual(inner.requests, [])

    def test_host_is_the_users(self) -> None:
        inner = Counting(Decision.deny("no"))
        auth = ScopedAuthorizer(inner, RoomScope("disabled", {"guests.org": frozenset({"r"})}))
        guest = self.successResultOf(auth.authorize(join(user="g@guests.org/x", room="r@m.org")))
        member = self.successResultOf(auth.authorize(join(user="m@example.org/x", room="r@m.org")))
        self.assertTrue(guest.is_allowed)
        self.assertTrue(member.is_denied)
        self.assertEqual([r.user.host for r in inner.requests], ["example.org"])
