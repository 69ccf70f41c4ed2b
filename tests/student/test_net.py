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
