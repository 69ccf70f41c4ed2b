"""The thinc model: nodes (``nodes.py``), the inference engine (``engine.py``), head
building (``build.py``), the optimizer step (``optimizer.py``), exit policies and the
PyTorch heads (``heads/``). Import from the modules (no imports here, so that
``settings`` can import the exit policies without a cycle)."""
