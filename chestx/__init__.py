"""chestx: pneumonia detection on chest X-rays, from training to a served, deployed model.

Nothing heavy is imported here, so ``chestx --help`` stays instant.
"""

__version__ = "0.1.0"
