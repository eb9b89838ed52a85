#!/usr/bin/env python3
"""The floor of the threaded scenario: how long 32 blocked threads take to wake.

    python benchmarks/thread_wakeup_floor.py

Releases 32 pre-acquired locks (one per blocked thread, as batchpilot's `Waiter`
does when a batch completes) and waits until every thread has re-acquired the GIL
and checked in. No batching at all: any batcher serving 32 blocked threads pays at
least this per batch on this machine.
"""

from __future__ import annotations

import threading
import time

THREADS = 32
ROUNDS = 200


def main() -> None:
    locks = [threading.Lock() for _ in range(THREADS)]
    for lock in locks:
        lock.acquire()
    arrived = [0]
    everyone = threading.Event()
    count_lock = threading.Lock()

    def waiter(index: int) -> None:
        for _ in range(ROUNDS):
            locks[index].acquire()
            with count_lock:
                arrived[0] += 1
                if arrived[0] == THREADS:
                    everyone.set()

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    total = 0.0
    for _ in range(ROUNDS):
        everyone.clear()
        arrived[0] = 0
        start = time.perf_counter()
        for lock in locks:
            lock.release()
        everyone.wait()
        total += time.perf_counter() - start
    per_round = total / ROUNDS
    print(
        f"{per_round * 1e3:.3f} ms per round of {THREADS} wake-ups "
        f"({per_round / THREADS * 1e6:.1f} us per thread)"
    )


if __name__ == "__main__":
    main()
