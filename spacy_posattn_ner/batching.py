"""Length-sorted grouping (padding is paid per group, not per batch), padding to a
length that depends on a row's own length only (batch invariance), and where runs of
given lengths start when laid end to end."""
from typing import List, Optional, Sequence, Tuple

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


# Buckets per doubling of the length: padding costs at most 1/8 of a row (rows of
# 64+), at most 7 positions below that (every row of 1-8 is padded to 8).
BUCKETS_PER_OCTAVE = 8


def padded_length(length: int, cap: Optional[int] = None) -> int:
    """The length a row of ``length`` is padded to, whatever its batch mates: the next
    multiple of ``max(8, 2 ** (floor(log2(length)) - 3))`` (8, 16, 24, ..., 64, 72, ...,
    128, 144, ...), at most ``cap`` when ``length <= cap`` (a model's position limit).

    A row's results must not depend on the rows batched with it. In bf16 they do
    through the padded length: attention (SDPA) reduces over the padded keys in
    blocks, and a longer pad changes the rounding (~4e-3 on MiniLM). Padding every
    row to a length of its own, and batching only rows of one such length, makes a
    row see the same shapes in every batch."""
    length = max(int(length), 1)
    step = max(8, 1 << max(length.bit_length() - 1 - 3, 0))
    out = -(-length // step) * step
    return min(out, cap) if cap is not None and length <= cap else out


def bucket_chunks(lengths: Sequence[int], budget: int, cap: Optional[int] = None) -> List[Tuple[numpy.ndarray, int]]:
    """``length_chunks`` with every group of one ``padded_length`` bucket: (indices of
    ``lengths`` sorted by length, the length they are all padded to), each group's
    padded size within ``budget`` unless it is one member. Every index appears once."""
    lengths = numpy.asarray(lengths, dtype="int64")
    order = numpy.argsort(lengths, kind="stable")
    padded = numpy.asarray([padded_length(n, cap) for n in lengths[order].tolist()], dtype="int64")
    out, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order) or padded[end] != padded[start] or padded[end] * (end + 1 - start) > budget:
            out.append((order[start:end], int(padded[start])))
            start = end
    return out


def run_starts(lengths: numpy.ndarray) -> numpy.ndarray:
    """Where each run starts when runs of ``lengths`` are laid end to end (int64)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    return numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64") if len(lengths) else lengths
