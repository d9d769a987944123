"""The ``tagserve`` command: a thin front door over ``training`` and ``service``."""

__version__ = "0.1.0"
