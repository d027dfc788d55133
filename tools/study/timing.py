"""The timing loop the speed study tools share: images/s of one call, median over repeated calls."""
import time

import numpy as np


def images_per_s(call, batch: int, calls: int, warmup: int = 3) -> float:
    """``batch`` / the median wall time of ``calls`` calls of ``call()``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times))
