"""Long rows run the attention blocks in overlapping chunks (issue 27, item 2): the
same answers as before on rows of up to ``CHUNK`` tokens, each token of a longer row
answered by the chunk where it is most central, and memory that grows linearly."""
import pytest
import torch

from spacy_posattn_ner.layers import attention
from spacy_posattn_ner.layers.attention import CHUNK, CONTEXT, PositionalAttentionBlock, chunk_count, run_blocks
from spacy_posattn_ner.model.heads import PosAttnHead


def _blocks(depth: int = 2, width: int = 16):
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(PositionalAttentionBlock(width, 2, 4, 0.0) for _ in range(depth)).eval()
    for p in blocks.parameters():  # non-trivial attention (zero biases would hide position effects)
        torch.nn.init.normal_(p, std=0.3)
    return blocks


def _plain(blocks, x, mask):
    for block in blocks:
        x = block(x, mask)
    return x


@pytest.mark.parametrize("T", [1, 37, CHUNK])
def test_rows_up_to_the_chunk_length_run_whole_as_before(T):
    blocks = _blocks()
    x = torch.randn(3, T, 16)
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[1, T // 2 :] = False
    with torch.inference_mode():
        assert torch.equal(run_blocks(blocks, x, mask), _plain(blocks, x, mask))


def test_a_head_on_short_rows_answers_exactly_as_a_loop_over_its_blocks():
    torch.manual_seed(1)
    head = PosAttnHead(n_layers=3, hidden_width=16, n_tags=5, width=16, depth=2, n_heads=2, max_distance=4,
                       lexical_rows=[50, 10], lexical_width=4, dropout=0.0).eval()
    mixed, lex = torch.randn(2, 40, 16), torch.randint(0, 10, (2, 40, 2, 4))
    mask = torch.ones(2, 40, dtype=torch.bool)
    with torch.inference_mode():
        got = head.from_mixed(mixed, lex, mask)
        x = torch.cat([head.hidden_norm(mixed), head.lexical(lex)], dim=-1)
        want = head.tagger(head.norm(_plain(head.blocks, head.project(x), mask)))
    assert torch.equal(got, want)


@pytest.mark.parametrize("chunk,context,T", [(16, 4, 17), (16, 4, 45), (16, 4, 200), (32, 8, 33)])
def test_each_token_of_a_long_row_is_answered_by_its_most_central_chunk(chunk, context, T):
    blocks = _blocks()
    x = torch.randn(2, T, 16)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, T - 3 :] = False
    with torch.inference_mode():
        got = run_blocks(blocks, x, mask, chunk, context)
        stride = chunk - 2 * context
        n = chunk_count(T, chunk, context)
        assert (n - 1) * stride + chunk - context >= T > (n - 2) * stride + chunk - context if n > 1 else T <= chunk
        alone = {}
        for t in range(T):
            k = min(max(t - context, 0) // stride, n - 1)
            s = k * stride
            assert s + (context if k else 0) <= t and (t < s + chunk - context or k == n - 1)  # owned by chunk k
            if k not in alone:  # the chunk run on its own
                window = slice(s, min(s + chunk, T))
                alone[k] = _plain(blocks, x[:, window], mask[:, window])
            for b in range(2):
                if mask[b, t]:
                    assert torch.allclose(got[b, t], alone[k][b, t - s], atol=1e-5), (t, k)


def test_padding_a_long_row_further_does_not_change_its_answers():
    blocks = _blocks()
    x = torch.randn(1, 1500, 16)
    with torch.inference_mode():
        short = run_blocks(blocks, x, torch.ones(1, 1500, dtype=torch.bool))
        padded_x = torch.cat([x, torch.randn(1, 700, 16)], dim=1)
        padded_mask = torch.arange(2200)[None] < 1500
        longer = run_blocks(blocks, padded_x, padded_mask)
    assert torch.allclose(short, longer[:, :1500], atol=1e-6)


def test_long_rows_train(monkeypatch):
    """Gradients flow through the chunks to every position's input."""
    blocks = _blocks().train()
    x = torch.randn(1, 100, 16, requires_grad=True)
    run_blocks(blocks, x, torch.ones(1, 100, dtype=torch.bool), 32, 8).sum().backward()
    assert x.grad is not None and (x.grad.abs().sum(-1) > 0).all()


def test_memory_of_a_20k_token_row_stays_small():
    """20,000 tokens through a block: the chunked attention never holds a (T, T) matrix
    (20k x 20k x 2 heads of float32 would be 3.2 GB)."""
    import resource

    blocks = _blocks(depth=1, width=32)
    x = torch.randn(1, 20_000, 32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        out = run_blocks(blocks, x, torch.ones(1, 20_000, dtype=torch.bool))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert out.shape == (1, 20_000, 32) and torch.isfinite(out).all()
    assert grown_mb < 500, grown_mb
    assert CHUNK > 2 * CONTEXT and attention.CHUNK_GROUP_TOKENS >= CHUNK
