"""The optimizer step on the head's parameters, in place.

thinc's PyTorchShim.finish_update wraps every parameter in a new tensor at each step;
with thinc 8.3 and torch 2.13 the process then grows by megabytes per step (measured:
+3 MB/step for a small head), enough to exhaust RAM over a full GMB training run.
Updating the same tensors in place keeps memory flat and leaves the optimizer (its
schedule, L2, clipping) as configured. The backbone is never in the optimizer: its
parameters are not in any shim (it is an attribute of a node, not a layer).
"""
from thinc.api import Model, Optimizer, torch2xp, xp2torch


def step_in_place(model: Model, sgd: Optimizer) -> None:
    """One optimizer step on every torch parameter with a gradient, then zero the gradients."""
    for node in model.walk():
        for shim in node.shims:
            for name, param in shim._model.named_parameters():
                if param.grad is None:
                    continue
                weights = torch2xp(param.data)
                new, _ = sgd((shim.id, name), weights, torch2xp(param.grad))
                if new is not weights:
                    param.data.copy_(xp2torch(new, device=param.device))
                param.grad.zero_()
        if node.param_names:  # the model has no thinc parameters of its own
            raise ValueError(f"posattn_ner: unexpected thinc parameters in {node.name}")


__all__ = ["step_in_place"]
