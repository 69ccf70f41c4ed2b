"""PyTorch building blocks of the trainable head (the backbone lives in ``backbone/``)."""
