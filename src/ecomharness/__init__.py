"""ecomharness: evaluation-first harness for domain continual pre-training, on lm-eval."""

from ecomharness.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
