"""The allocator tuning gives freed large arrays back to the system (glibc: every Linux CI machine here)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Frees a 24 MB block (glibc then maps only blocks above 24 MB on their own), then holds
# 100 blocks of 2 MB with a small one after each, and frees the large ones: untuned, they
# sit in the heap under the small ones and stay resident; tuned, each was mapped on its own.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, psutil
    from repgeom.memory import release_free_memory, tune_allocator
    if sys.argv[1] == "tuned":
        assert tune_allocator()
    rss = lambda: psutil.Process().memory_info().rss / 2**20
    big = np.ones(3 << 20)
    del big
    before = rss()
    blocks, pins = [], []
    for _ in range(100):
        blocks.append(np.ones(2 << 17))
        pins.append(np.ones(64))
    blocks.clear()
    freed = rss() - before
    release_free_memory()
    print(freed, rss() - before)
""")


def _kept_mb(mode: str) -> tuple[float, float]:
    """MB still resident after the blocks were freed, and after free pages were released."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    freed, released = out.stdout.split()[-2:]
    return float(freed), float(released)


def test_freed_large_arrays_leave_the_resident_set_once_the_allocator_is_tuned():
    untuned, tuned = _kept_mb("untuned"), _kept_mb("tuned")
    assert untuned[0] > 150, f"untuned, only {untuned[0]:.0f} MB stayed resident: the scenario no longer shows the problem"
    assert tuned[0] < 20, f"{tuned[0]:.0f} MB of freed arrays stayed resident with the allocator tuned"
    assert untuned[1] < 20, f"releasing free memory left {untuned[1]:.0f} MB of freed arrays resident"
