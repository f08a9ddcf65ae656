"""The search's core abstractions; ``space`` and ``vocabulary`` are pure Python (no TensorFlow)."""
