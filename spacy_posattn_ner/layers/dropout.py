"""Dropout whose random mask is cheap on the CPU.

On the CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which ran at
about 10 ns per element on the 2-core machine of BENCHMARKS.md: in a profile of 35
training steps of the default model, 31% of the torch operators' time (more than its
matrix products) and 26% of the steps' wall time. Here the
mask comes from numpy's SFC64 generator as 16-bit integers, 4 per 64-bit draw (about
1 ns per element). The generator is seeded from torch's default generator at each
call, so ``fix_random_seed`` (spaCy's ``[system] seed``) still makes a run repeatable.
The rate is honoured to 1/65,536. On other devices this is ``torch.nn.Dropout``.
"""
import numpy
import torch
from torch import nn

_LEVELS = 2**16


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of ``shape`` on the CPU, each element True with probability 1 - p."""
    n = int(numpy.prod(shape, dtype="int64"))
    seed = int(torch.randint(0, 2**62, (1,)).item())
    bits = numpy.random.Generator(numpy.random.SFC64(seed)).bit_generator.random_raw((n + 3) // 4)
    draws = bits.view(numpy.uint16)[:n]
    return torch.from_numpy(draws >= int(round(p * _LEVELS))).view(shape)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same scaling by 1 / (1 - p) in training, identity
    in eval) with a numpy-drawn mask on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        scale = torch.tensor(1.0 / (1.0 - self.p), dtype=x.dtype)
        return x * (keep_mask(x.shape, self.p).to(x.dtype) * scale)
