"""Join/leave churn through an in-memory MUCService, shared by ``tests/robustness/test_churn.py``
and ``bench/churn.py`` (here, in ``examples/``, because ``bench/`` does not import ``tests``).

Each cycle one user joins a room and, ``lag`` cycles later, leaves it again, so rooms hold
several occupants at once, are created and destroyed over and over, and some joins find their
nick taken or their room half full. Every room object is watched through a weak reference: after
the churn, none may still be alive (a room kept by a closure, a Deferred or a map would be).
"""

from __future__ import annotations

import gc
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.task import Clock
from wokkel.generic import parseXml
from wokkel.test.helpers import TestableStreamManager

from mucauth.authorize.base import IJoinAuthorizer, StaticAuthorizer
from mucauth.muc.room import Room
from mucauth.muc.service import MUCService
from mucauth.settings import MUCSettings, RoomDefaults

SERVICE = "rooms.example.org"
NS = "jabber:component:accept"
MUC_X = "<x xmlns='http://jabber.org/protocol/muc'/>"


@dataclass
class ChurnResult:
    cycles: int
    rooms_seen: int
    max_rooms: int
    stanzas_out: int
    rooms_left: int
    pending_left: int
    per_user_left: int
    rooms_alive: int  # Room objects not yet garbage-collected after the churn


def users(count: int) -> list[str]:
    return [f"user{n}@example.org/r{n % 3}" for n in range(count)]


def make_service(
    authorizer: IJoinAuthorizer | None = None,
    user_count: int = 50,
    clock: Clock | None = None,
) -> tuple[MUCService, TestableStreamManager]:
    if authorizer is None:
        allowed = frozenset(u.split("/")[0] for u in users(user_count))
        authorizer = StaticAuthorizer(allowed)
    settings = MUCSettings(rooms=RoomDefaults(history_length=5))
    service = MUCService(authorizer, settings, clock=clock or Clock())
    manager = TestableStreamManager()
    service.setHandlerParent(manager)
    return service, manager


def churn(
    service: MUCService,
    manager: TestableStreamManager,
    *,
    cycles: int,
    rooms: int,
    user_count: int = 50,
    lag: int = 40,
    after_each: Callable[[int], None] | None = None,
) -> ChurnResult:
    """Run the churn, then have everyone still inside leave; return what is left."""
    people = users(user_count)
    inside: deque[tuple[str, str]] = deque()
    watched: list[weakref.ref[Room]] = []
    seen: set[int] = set()
    max_rooms = 0
    out = 0

    def send(xml: str) -> None:
        nonlocal out
        manager.stub.send(parseXml(xml))
        out += len(manager.stub.output)
        del manager.stub.output[:]

    def watch() -> None:
        for room in service.rooms.values():
            if id(room) not in seen:
                seen.add(id(room))
                watched.append(weakref.ref(room))

    def leave() -> None:
        user, occupant = inside.popleft()
        send(f"<presence xmlns='{NS}' from='{user}' to='{occupant}' type='unavailable'/>")

    for n in range(cycles):
        user = people[n % user_count]
        room = f"room{(n * 7) % rooms}@{SERVICE}"
        occupant = f"{room}/nick{n % user_count}"
        send(f"<presence xmlns='{NS}' from='{user}' to='{occupant}' id='j{n}'>{MUC_X}</presence>")
        if n % 5 == 0:
            body = "<body>hello</body>"
            send(
                f"<message xmlns='{NS}' from='{user}' to='{room}' type='groupchat'>{body}</message>"
            )
        inside.append((user, occupant))
        watch()
        max_rooms = max(max_rooms, len(service.rooms))
        if len(inside) > lag:
            leave()
        if after_each is not None:
            after_each(n)
    while inside:
        leave()
    if after_each is not None:
        after_each(cycles)
    gc.collect()
    return ChurnResult(
        cycles=cycles,
        rooms_seen=len(watched),
        max_rooms=max_rooms,
        stanzas_out=out,
        rooms_left=len(service.rooms),
        pending_left=service.pending_checks,
        per_user_left=len(service.pending_per_user),
        rooms_alive=sum(1 for ref in watched if ref() is not None),
    )
