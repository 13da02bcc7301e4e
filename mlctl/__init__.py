"""mlctl: take a trained model to a tested web service, driven by declarative YAML specs.

This module stays import-free: it is copied into every scoring runtime.
"""

__version__ = "0.1.0"
