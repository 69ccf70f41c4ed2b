"""FastDropout: the same dropout as torch's, with a cheaper mask on the CPU."""
import torch

from spacy_posattn_ner.layers import dropout as dropout_module
from spacy_posattn_ner.layers.attention import PositionalAttention
from spacy_posattn_ner.layers.dropout import FastDropout, keep_mask


def test_mask_keeps_the_expected_share_and_scales_the_kept():
    layer = FastDropout(0.1).train()
    x = torch.ones(1000, 1000)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.003  # the expectation is kept


def test_masks_are_independent_across_elements_and_calls():
    a = keep_mask(torch.Size((200_000,)), 0.5)
    b = keep_mask(torch.Size((200_000,)), 0.5)
    assert 0.49 < (a == b).float().mean().item() < 0.51
    # neighbours (the 4 draws from one 64-bit number) are not tied to each other
    assert 0.49 < (a[0::4] == a[1::4]).float().mean().item() < 0.51


def test_the_torch_seed_decides_the_mask():
    torch.manual_seed(3)
    a = keep_mask(torch.Size((5000,)), 0.3)
    torch.manual_seed(3)
    b = keep_mask(torch.Size((5000,)), 0.3)
    torch.manual_seed(4)
    c = keep_mask(torch.Size((5000,)), 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_identity_in_eval_and_at_rate_zero_and_zero_at_rate_one():
    x = torch.randn(7, 5, requires_grad=True)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))


def test_gradient_flows_through_the_kept_elements_only():
    torch.manual_seed(0)
    x = torch.randn(50, 40, requires_grad=True)
    y = FastDropout(0.25).train()(x)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))


def test_training_attention_with_nothing_dropped_equals_inference_attention(monkeypatch):
    torch.manual_seed(0)
    attention = PositionalAttention(width=16, n_heads=4, max_distance=3, dropout=0.2)
    torch.nn.init.normal_(attention.position.bias.weight)
    x = torch.randn(3, 6, 16)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    expected = attention.eval()(x, mask)
    # keep everything (and undo the 1 / (1 - p) scale) to compare the two code paths
    monkeypatch.setattr(dropout_module, "keep_mask", lambda shape, p: torch.ones(shape, dtype=torch.bool))
    attention.train()
    attention.dropout.p = 0.2
    scaled = attention(x, mask)
    # the attention weights were scaled by 1 / 0.8; the out projection is affine, so undo it after
    unscaled = (scaled - attention.out.bias) * 0.8 + attention.out.bias
    assert torch.allclose(unscaled[mask], expected[mask], atol=1e-5)
