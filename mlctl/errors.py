"""One exception hierarchy; each class owns its documented process exit code.

Commands raise these and never call ``sys.exit``; ``mlctl.cli.main`` turns them into a
message on stderr and the exit code below. The table is repeated in the README.

| code | class               | meaning                                                       |
|------|---------------------|---------------------------------------------------------------|
| 0    | ok                  | success                                                       |
| 1    | unexpected          | a bug in mlctl: rerun with ``--debug`` and report it          |
| 2    | usage               | bad command line (unknown option, missing argument)           |
| 3    | SpecError           | a spec file is unreadable or invalid                          |
| 4    | NotFoundError       | a model, version, service or file does not exist              |
| 5    | ConflictError       | refused: the object is in use or the state forbids it         |
| 6    | TargetError         | the compute target cannot run this (port in use, unsupported) |
| 7    | DeploymentError     | the service did not start: environment, init(), readiness     |
| 8    | ServiceTestFailed   | the service answered, but not what the spec's test expects    |
| 9    | WaitTimeout         | a wait ran out of time                                        |
| 10   | IntegrityError      | stored content no longer matches its recorded hash            |
| 130  | interrupted         | Ctrl-C; nothing half-done is left behind                      |
"""

from __future__ import annotations

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class MlctlError(Exception):
    """Base of every error mlctl reports to the user.

    Args:
        message: what went wrong, in one sentence.
        hint: what to do next (a command to run, a key to fix); shown after the message.
    """

    exit_code = EXIT_UNEXPECTED
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def to_dict(self) -> dict[str, object]:
        """The error as the JSON document printed under ``--output json``."""
        doc: dict[str, object] = {"error": self.kind, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            doc["hint"] = self.hint
        if self.details:
            doc["details"] = self.details
        return doc


class SpecError(MlctlError):
    """A spec file is unreadable or invalid; ``details`` holds one ``FILE:LINE:COL: $.path: msg`` each."""

    exit_code = 3
    kind = "spec_error"


class NotFoundError(MlctlError):
    """A named object (model, model version, service, file) does not exist."""

    exit_code = 4
    kind = "not_found"


class ConflictError(MlctlError):
    """The operation is refused by the current state (e.g. a model version in use by a service)."""

    exit_code = 5
    kind = "conflict"


class TargetError(MlctlError):
    """The compute target cannot run this deployment (preflight failure)."""

    exit_code = 6
    kind = "target_error"


class DeploymentError(MlctlError):
    """The web service did not become ready; ``phase`` names where it failed."""

    exit_code = 7
    kind = "deployment_failed"

    def __init__(self, message: str, *, phase: str, hint: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message, hint=hint, details=details)
        self.phase = phase

    def to_dict(self) -> dict[str, object]:
        """The error document, with the failing phase."""
        return {**super().to_dict(), "phase": self.phase}


class ServiceTestFailed(MlctlError):
    """The service answered, but its output differs from the spec's expected output."""

    exit_code = 8
    kind = "test_failed"


class WaitTimeout(MlctlError):
    """A wait (for readiness, for a lock) ran out of time."""

    exit_code = 9
    kind = "timeout"


class IntegrityError(MlctlError):
    """Stored content (a model blob) no longer matches its recorded SHA-256."""

    exit_code = 10
    kind = "integrity_error"
