"""The overhead scripts' shared pieces: heap allocations counted by scripts/malloccount.c (built as a
shared library and preloaded with LD_PRELOAD) and a host timing loop."""
import ctypes
import time


def counter():
    """`malloc_count()` of the preloaded scripts/malloccount.c, or None when it is not preloaded."""
    try:
        count = ctypes.CDLL(None).malloc_count
    except AttributeError:
        return None
    count.restype = ctypes.c_long
    return count


def time_calls(f, calls, count=None, warmup=20):
    """Host seconds per call of `f()` over `calls` calls after `warmup` more, and heap allocations per
    call (None without a counter)."""
    for _ in range(warmup):
        f()
    before = count() if count else 0
    t0 = time.perf_counter()
    for _ in range(calls):
        f()
    elapsed = time.perf_counter() - t0
    return elapsed / calls, ((count() - before) / calls if count else None)
