"""Memory churn at full size: 20,000 join/leave cycles over 500 rooms through the MUC service.

Run from the checkout: ``python bench/churn.py [--cycles N] [--rooms N] [--users N]``. The
service runs in memory (no network), behind an authorizer that allows every user at once, so
what is measured is the service's own bookkeeping: rooms created and destroyed, occupants,
pending checks. It prints time, memory (RSS and live objects; with ``--tracemalloc`` also
traced allocations, at a tenth of the speed) before and after, and what is left. It asserts
nothing: ``tests/robustness/test_churn.py`` runs a smaller version with assertions.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples._churn import churn, make_service  # noqa: E402


def rss_kib() -> int:
    """Resident set size now, from /proc (ru_maxrss would be the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--lag", type=int, default=300, help="cycles an occupant stays")
    parser.add_argument("--tracemalloc", action="store_true", help="trace allocations (slow)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # Wokkel on current Twisted

    service, manager = make_service(user_count=args.users)
    # A first short run warms up caches (interned strings, stringprep tables) so the figures
    # below measure the churn, not the first use of each code path.
    churn(service, manager, cycles=200, rooms=min(args.rooms, 50), user_count=args.users)
    gc.collect()
    rss_before, objects_before = rss_kib(), len(gc.get_objects())
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    result = churn(
        service, manager, cycles=args.cycles, rooms=args.rooms, user_count=args.users, lag=args.lag
    )
    elapsed = time.perf_counter() - started
    gc.collect()
    traced_after, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after, objects_after = rss_kib(), len(gc.get_objects())

    print(f"cycles            {result.cycles}")
    print(f"rooms created     {result.rooms_seen} (at most {result.max_rooms} at once)")
    print(f"stanzas sent      {result.stanzas_out}")
    print(f"time              {elapsed:.1f} s ({result.cycles / elapsed:.0f} cycles/s)")
    if args.tracemalloc:
        print(
            f"traced memory     {traced_after / 1024:.0f} KiB still allocated after,"
            f" peak {traced_peak / 1024:.0f} KiB"
        )
    print(f"RSS               {rss_before} KiB before, {rss_after} KiB after")
    print(f"live objects      {objects_before} before, {objects_after} after")
    print(
        f"left              rooms={result.rooms_left} pending={result.pending_left}"
        f" per_user={result.per_user_left} rooms_alive={result.rooms_alive}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
