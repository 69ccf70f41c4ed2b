"""The student's encoder layer: its window product is the convolution its weights describe."""
import pytest
import torch

from spacy_posattn_ner.student.net import MaxoutWindow


@pytest.mark.parametrize("window", [0, 1, 2])
def test_window_product_equals_the_convolution_and_follows_weight_updates(window):
    torch.manual_seed(window)
    layer = MaxoutWindow(width=8, window=window, pieces=2, dropout=0.0)
    x = torch.randn(3, 11, 8)

    def conv(inputs):
        return layer.conv(inputs.transpose(1, 2)).transpose(1, 2)

    with torch.inference_mode():
        torch.testing.assert_close(layer._window_linear(x), conv(x), rtol=1e-5, atol=1e-5)
    # a training step changes the weights in place: inference must not reuse the old matrix
    out = layer._window_linear(x)  # grad enabled: built from the live weight
    out.sum().backward()
    with torch.no_grad():
        layer.conv.weight -= 0.5 * layer.conv.weight.grad
    with torch.inference_mode():
        torch.testing.assert_close(layer._window_linear(x), conv(x), rtol=1e-5, atol=1e-5)
    # so does loading other weights
    other = MaxoutWindow(width=8, window=window, pieces=2, dropout=0.0)
    layer.load_state_dict(other.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(layer._window_linear(x), conv(x), rtol=1e-5, atol=1e-5)


def test_window_product_follows_thincs_optimizer_updates():
    """thinc's optimizer updates a weight's memory in place and assigns it back with
    ``.data =``, which leaves its data pointer and version counter as they were: the cached
    matrix must still go (a training step, which puts the net in training mode, drops it).
    Without this, the dev scores of a student's training read stale weights."""
    from thinc.api import Adam, PyTorchShim

    torch.manual_seed(0)
    layer = MaxoutWindow(width=8, window=1, pieces=2, dropout=0.0)
    shim = PyTorchShim(layer)
    optimizer = Adam(0.1)
    x = torch.randn(2, 7, 8)

    def conv(inputs):
        return layer.conv(inputs.transpose(1, 2)).transpose(1, 2)

    for _ in range(3):
        layer.eval()
        with torch.inference_mode():
            torch.testing.assert_close(layer._window_linear(x), conv(x), rtol=1e-5, atol=1e-5)
        layer.train()  # a training step (the student's training forward)
        layer._window_linear(x).pow(2).sum().backward()
        shim.finish_update(optimizer)
    layer.eval()
    with torch.inference_mode():
        torch.testing.assert_close(layer._window_linear(x), conv(x), rtol=1e-5, atol=1e-5)
