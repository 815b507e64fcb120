"""XEP-0045's privilege tables, row by row (§5.1.2, §5.2.2, §8, §9, §10)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mucauth.muc.errors import Forbidden, MUCError, NoOwnerLeft, NotAllowed
from mucauth.muc.privileges import (
    check_affiliation_change,
    check_affiliation_list,
    check_role_change,
    check_role_list,
)

OK = None

# (actor role, actor affiliation, target affiliation, target role, new role) -> refusal
ROLE_CHANGES: list[tuple[tuple[str, str, str, str, str], type[MUCError] | None]] = [
    # kick (role none)
    (("moderator", "owner", "none", "participant", "none"), OK),
    (("moderator", "admin", "member", "participant", "none"), OK),
    (("moderator", "none", "none", "visitor", "none"), OK),  # a moderator by role only
    (("moderator", "member", "member", "participant", "none"), OK),
    (("moderator", "none", "member", "participant", "none"), NotAllowed),  # higher affiliation
    (("moderator", "owner", "admin", "moderator", "none"), NotAllowed),  # §8.2: never an admin
    (("moderator", "admin", "owner", "moderator", "none"), NotAllowed),
    (("participant", "member", "none", "participant", "none"), Forbidden),
    (("visitor", "none", "none", "participant", "none"), Forbidden),
    (("participant", "owner", "none", "participant", "none"), Forbidden),  # role decides
    # voice
    (("moderator", "none", "none", "visitor", "participant"), OK),
    (("moderator", "member", "none", "participant", "visitor"), OK),
    (("moderator", "owner", "admin", "moderator", "visitor"), NotAllowed),  # an admin's role
    (("moderator", "owner", "owner", "moderator", "participant"), NotAllowed),
    (("participant", "none", "none", "visitor", "participant"), Forbidden),
    # moderation: admins and owners only
    (("moderator", "admin", "none", "participant", "moderator"), OK),
    (("moderator", "owner", "member", "participant", "moderator"), OK),
    (("moderator", "owner", "none", "moderator", "participant"), OK),
    (("moderator", "member", "none", "participant", "moderator"), Forbidden),
    (("moderator", "none", "none", "moderator", "participant"), Forbidden),
    (("moderator", "admin", "admin", "moderator", "participant"), NotAllowed),
]

# (actor affiliation, target's affiliation, new affiliation, owners left) -> refusal
AFFILIATION_CHANGES: list[tuple[tuple[str, str, str, int], type[MUCError] | None]] = [
    # ban
    (("owner", "none", "outcast", 1), OK),
    (("admin", "member", "outcast", 1), OK),
    (("owner", "admin", "outcast", 1), OK),
    (("admin", "admin", "outcast", 1), NotAllowed),  # §9.1
    (("admin", "owner", "outcast", 1), NotAllowed),
    (("member", "none", "outcast", 1), Forbidden),
    (("none", "none", "outcast", 1), Forbidden),
    # membership
    (("admin", "none", "member", 1), OK),
    (("admin", "member", "none", 1), OK),
    (("admin", "outcast", "none", 1), OK),
    (("member", "none", "member", 1), Forbidden),
    # admin and owner: owners only
    (("owner", "member", "admin", 1), OK),
    (("owner", "none", "owner", 2), OK),
    (("owner", "admin", "member", 1), OK),
    (("admin", "member", "admin", 1), Forbidden),
    (("admin", "none", "owner", 1), Forbidden),
    (("admin", "admin", "member", 1), NotAllowed),
    # the last owner
    (("owner", "owner", "admin", 0), NoOwnerLeft),
    (("owner", "owner", "none", 1), OK),
]


class RoleChangeTests(SynchronousTestCase):
    def test_the_table(self) -> None:
        for args, refusal in ROLE_CHANGES:
            with self.subTest(args=args):
                if refusal is None:
                    check_role_change(*args)
                else:
                    self.assertRaises(refusal, check_role_change, *args)


class AffiliationChangeTests(SynchronousTestCase):
    def test_the_table(self) -> None:
        for args, refusal in AFFILIATION_CHANGES:
            with self.subTest(args=args):
                if refusal is None:
                    check_affiliation_change(*args)
                else:
                    self.assertRaises(refusal, check_affiliation_change, *args)


class ListTests(SynchronousTestCase):
    def test_role_lists_are_for_moderators(self) -> None:
        check_role_list("moderator")
        for role in ("participant", "visitor", "none"):
            self.assertRaises(Forbidden, check_role_list, role)

    def test_affiliation_lists_are_for_admins_and_owners(self) -> None:
        check_affiliation_list("owner")
        check_affiliation_list("admin")
        for affiliation in ("member", "none", "outcast"):
            self.assertRaises(Forbidden, check_affiliation_list, affiliation)
