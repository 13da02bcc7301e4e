"""``AMLResponse`` by the reference server's own module path; see ``mlctl.serve.rawhttp``."""

from mlctl.serve.rawhttp import AMLResponse

__all__ = ["AMLResponse"]
