"""Latency histograms that DynamoDB can merge with ADD, and their quantiles (DDSketch).

A latency in milliseconds falls in one bucket of DDSketch's logarithmic mapping: a bucket is a
counter attribute (`l_<key>`), so histograms of any flushes, shards and workers add up exactly, and
quantiles read from the merged counts are within `RELATIVE_ACCURACY` of the true value (the ddsketch
library maps values to buckets and reads the quantiles; tests/unit/test_latency.py measures it).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
ZERO = "z"  # 0 ms: the mapping covers positive values only
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


@lru_cache(maxsize=65536)
def bucket(milliseconds: int) -> str:
    """The bucket of a latency, as the suffix of its counter attribute."""
    return ZERO if milliseconds <= 0 else str(_MAPPING.key(milliseconds))


def quantiles(counts: Mapping[str, int], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[float, float]:
    """Quantiles of a histogram read back from an item (bucket suffix -> count); empty if no counts."""
    sketch = DDSketch(RELATIVE_ACCURACY)
    for key, count in counts.items():
        if count > 0:
            sketch.add(0.0 if key == ZERO else _MAPPING.value(int(key)), float(count))
    if sketch.count == 0:
        return {}
    return {q: float(sketch.get_quantile_value(q) or 0.0) for q in qs}
