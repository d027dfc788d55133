"""Numbers from timings: percentiles, medians of repeats, where batching stops paying, process memory.

Pure Python/numpy, no timing of its own: the harness measures, this module summarises.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

#: A batch size "still pays" while images/s grows by at least this fraction over the previous size.
SATURATION_GAIN = 0.05


def percentiles_ms(seconds: Sequence[float] | np.ndarray, qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ms, "p90": ms, "p99": ms}`` of durations given in seconds (linear interpolation)."""
    a = np.asarray(seconds, dtype=np.float64)
    if a.size == 0:
        return {f"p{q}": float("nan") for q in qs}
    values = np.percentile(a, qs) * 1e3
    return {f"p{q}": float(v) for q, v in zip(qs, values)}


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def saturation_batch(batch_sizes: Sequence[int], images_per_s: Sequence[float],
                     gain: float = SATURATION_GAIN) -> int | None:
    """The batch size after which throughput stops growing.

    Walking the sizes in increasing order, the answer is the first size whose successor adds less than
    ``gain`` (5 %) images/s; the largest size when every step still pays; None for no data.

    >>> saturation_batch([1, 2, 4, 8], [100, 180, 200, 204])
    4
    """
    pairs = sorted(zip(batch_sizes, images_per_s))
    if not pairs:
        return None
    for (b, ips), (_, nxt) in zip(pairs, pairs[1:]):
        if nxt < ips * (1.0 + gain):
            return int(b)
    return int(pairs[-1][0])


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (``VmRSS`` from /proc; peak RSS from ``resource``
    where /proc is missing, which can only over-report growth)."""
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
