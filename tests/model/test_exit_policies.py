"""spacy_posattn_ner.model.exit_policies: per-segment confidence at an exit."""
import math

import torch
from spacy.util import registry

from spacy_posattn_ner.model.exit_policies import (
    LEAST_SURE_TOKEN, MAX_TOKEN_ENTROPY, least_sure_token_confidence, max_token_entropy_confidence,
)


def _inputs():
    probs = torch.tensor([[[0.9, 0.05, 0.05], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]])
    log_probs = probs.clamp_min(1e-30).log()
    mask = torch.tensor([[True, True, False]])  # the uniform token is padding
    segment = torch.tensor([[0, 1, 1]])
    return log_probs, mask, segment


def test_registered_and_named():
    assert registry.misc.get(LEAST_SURE_TOKEN)() is least_sure_token_confidence
    assert registry.misc.get(MAX_TOKEN_ENTROPY)() is max_token_entropy_confidence


def test_least_sure_token_is_the_lowest_top_probability_per_segment():
    conf = least_sure_token_confidence(*_inputs(), 3)
    assert torch.allclose(conf, torch.tensor([0.9, 0.5, 1.0]))  # segment 2 has no token: 1.0


def test_max_token_entropy_is_one_minus_the_normalized_entropy_of_the_least_sure_token():
    conf = max_token_entropy_confidence(*_inputs(), 3)
    h0 = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)) / math.log(3)
    h1 = math.log(2) / math.log(3)
    assert torch.allclose(conf, torch.tensor([1 - h0, 1 - h1, 1.0]), atol=1e-6)
    # the two rules differ: spread doubt (0.9/0.05/0.05) vs a token torn between two tags
    assert conf[0] < 0.9 and conf[1] < 0.5
