"""Benchmarks: single-image vs batched inference (:mod:`.harness`), a camera-like stream (:mod:`.stream`),
percentiles and saturation (:mod:`.stats`), and the JSON/table/plot output (:mod:`.report`).

The harness owns the clock; runners only infer. Inputs are always real images.
"""

from edgeseg.bench.harness import Timing, bench_images, measure, overhead, sweep
from edgeseg.bench.stream import StreamConfig, run_stream

__all__ = ["Timing", "bench_images", "measure", "overhead", "sweep", "StreamConfig", "run_stream"]
