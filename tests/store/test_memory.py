"""The in-memory store keeps the contract (rooms and archive), so tests of the MUC service can
rely on it."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from mucauth.store import MemoryRoomStore
from tests.store.archive_contract import ArchiveContract
from tests.store.contract import RoomStoreContract


class MemoryRoomStoreTests(ArchiveContract, RoomStoreContract, TestCase):
    def make_store(self) -> MemoryRoomStore:
        store = MemoryRoomStore()
        store.open()
        return store
