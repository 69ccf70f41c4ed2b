"""Exit policies: when may a segment (a sentence, or a doc without sentence starts) leave
at an early exit? Registered functions chosen by the component's ``exit_policy`` block:

    [components.posattn_ner.exit_policy]
    @misc = "spacy-posattn-ner.least_sure_token.v1"

A registered function returns the policy, a callable
``(log_probs (B, T, K), mask (B, T) bool, segment (B, T) long, n_segments) -> (n_segments,)``
giving each segment's confidence in [0, 1] at this exit (1.0 for a segment with no token
in the chunk). The engine finishes the segments whose confidence reaches ``exit_threshold``;
a threshold of 1.0 or more never exits early (the engine does not even run the early heads).
"""
import math
from typing import Callable

import torch
from spacy.util import registry

ExitPolicy = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _segment_min(values: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    out = torch.ones(n_segments, dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, segment[mask], values[mask], reduce="amin")


def least_sure_token_confidence(
    log_probs: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor, n_segments: int
) -> torch.Tensor:
    """The lowest, over a segment's tokens, of the most likely tag's probability. One
    unsure token keeps the whole segment going, which protects entity boundaries
    better than an average would."""
    return _segment_min(log_probs.max(dim=-1).values.exp(), mask, segment, n_segments)


def max_token_entropy_confidence(
    log_probs: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor, n_segments: int
) -> torch.Tensor:
    """1 - the highest, over a segment's tokens, of the tag distribution's entropy divided
    by its maximum ``log K``: the sentence-level uncertainty of SENTEE (Li et al., ACL 2021,
    "Accelerating BERT Inference for Sequence Labeling via Early-Exit", which takes the
    maximum of the token uncertainties, not their mean). Unlike ``least_sure_token`` it
    looks at the whole distribution: a token torn between two tags is less sure than one
    whose doubt is spread thin."""
    n_tags = log_probs.shape[-1]
    if n_tags < 2:
        return torch.ones(n_segments, dtype=log_probs.dtype, device=log_probs.device)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1) / math.log(n_tags)
    return _segment_min((1.0 - entropy).clamp(0.0, 1.0), mask, segment, n_segments)


def _named(policy: ExitPolicy, name: str) -> ExitPolicy:
    policy.registry_name = name  # type: ignore[attr-defined]  (lets settings write it back to nlp.config)
    return policy


LEAST_SURE_TOKEN = "spacy-posattn-ner.least_sure_token.v1"
MAX_TOKEN_ENTROPY = "spacy-posattn-ner.max_token_entropy.v1"


@registry.misc(LEAST_SURE_TOKEN)
def least_sure_token() -> ExitPolicy:
    """The least sure token's top tag probability (the default; the rule before policies)."""
    return _named(least_sure_token_confidence, LEAST_SURE_TOKEN)


@registry.misc(MAX_TOKEN_ENTROPY)
def max_token_entropy() -> ExitPolicy:
    """1 - the most uncertain token's normalized entropy (Li et al. 2021's SENTEE)."""
    return _named(max_token_entropy_confidence, MAX_TOKEN_ENTROPY)


def policy_name(policy: ExitPolicy) -> str:
    """The registry name of a policy (for nlp.config), or a description of a custom one."""
    return getattr(policy, "registry_name", None) or getattr(policy, "__qualname__", repr(policy))
