"""Length-sorted grouping (padding is paid per group, not per batch), and where runs
of given lengths start when laid end to end."""
from typing import List, Sequence

import numpy


def length_chunks(lengths: Sequence[int], budget: int) -> List[numpy.ndarray]:
    """Indices of ``lengths`` sorted by length and cut into groups whose padded size
    (group size x longest member) stays within ``budget``; a member longer than the
    budget gets a group of its own. Every index appears exactly once."""
    lengths = numpy.asarray(lengths, dtype="int64")
    order = numpy.argsort(lengths, kind="stable")
    out, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order) or lengths[order[end]] * (end + 1 - start) > budget:
            out.append(order[start:end])
            start = end
    return out


def run_starts(lengths: numpy.ndarray) -> numpy.ndarray:
    """Where each run starts when runs of ``lengths`` are laid end to end (int64)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    return numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64") if len(lengths) else lengths
