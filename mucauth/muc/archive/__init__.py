"""The room's archive: ``write.py`` writes it (the stored message's format, the writes) and
reads a stored message back; ``query.py`` answers the MAM queries (XEP-0313) that read it."""

from mucauth.muc.archive.write import NS_MAM, NS_MAM_EXTENDED, NS_STANZA_ID, stamp
from mucauth.muc.rsm import NS_RSM

__all__ = ["NS_MAM", "NS_MAM_EXTENDED", "NS_RSM", "NS_STANZA_ID", "stamp"]
