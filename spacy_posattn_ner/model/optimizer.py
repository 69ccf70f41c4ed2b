"""The optimizer step on the head's parameters, in place.

thinc's PyTorchShim.finish_update wraps every parameter in a new tensor at each step;
with thinc 8.3 and torch 2.13 the process then grows by megabytes per step (measured:
+3 MB/step for a small head), enough to exhaust RAM over a full GMB training run.
Updating the same tensors in place keeps memory flat and leaves the optimizer (its
schedule, L2, clipping) as configured. The backbone is never in the optimizer: its
parameters are not in any shim (it is an attribute of a node, not a layer).

``use_params`` is the other half: spaCy scores dev and saves ``model-best`` and
``model-last`` inside ``nlp.use_params(optimizer.averages)``. The optimizer keys a torch
parameter by ``(shim.id, name)`` (here and in thinc's own ``PyTorchShim.finish_update``),
but ``PyTorchShim.use_params`` (thinc 8.3) only reads string keys ``"pytorch_{id}_{name}"``,
so with ``use_averages = true`` the averages were kept and never used: the setting
silently did nothing.
"""
import contextlib
from typing import Dict, Iterator, List, Tuple

import torch
from thinc.api import Model, Optimizer, torch2xp, xp2torch


def torch_params(model: Model) -> Iterator[Tuple[Tuple[int, str], torch.nn.Parameter]]:
    """Every torch parameter of the model's shims under the key optimizers use for it,
    ``(shim.id, name)``: what the step writes and what ``averages`` are kept under."""
    for node in model.walk():
        for shim in node.shims:
            for name, param in shim._model.named_parameters():
                yield (shim.id, name), param


def step_in_place(model: Model, sgd: Optimizer) -> None:
    """One optimizer step on every torch parameter with a gradient, then zero the gradients."""
    for node in model.walk():
        if node.param_names:  # the model has no thinc parameters of its own
            raise ValueError(f"posattn_ner: unexpected thinc parameters in {node.name}")
    for key, param in torch_params(model):
        if param.grad is None:
            continue
        weights = torch2xp(param.data)
        new, _ = sgd(key, weights, torch2xp(param.grad))
        if new is not weights:
            param.data.copy_(xp2torch(new, device=param.device))
        param.grad.zero_()


@contextlib.contextmanager
def use_params(model: Model, params: Dict) -> Iterator[None]:
    """The torch parameters found in ``params`` under ``(shim.id, name)`` (an optimizer's
    ``averages``) copied in for the block, the trained values restored after it, even on
    an error. Copying in place bumps each tensor's version, so caches keyed by it (the
    student's window matrix) see the change."""
    saved: List[Tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for key, param in torch_params(model):
                value = params.get(key)
                if value is None:
                    continue
                new = xp2torch(value, device=param.device)
                if tuple(new.shape) != tuple(param.shape):
                    raise ValueError(
                        f"posattn_ner: averaged parameter {key[1]} has shape {tuple(new.shape)}, the model's "
                        f"{tuple(param.shape)}"
                    )
                saved.append((param, param.detach().clone()))
                param.copy_(new)
        yield
    finally:
        with torch.no_grad():
            for param, value in saved:
                param.copy_(value)


__all__ = ["step_in_place", "torch_params", "use_params"]
