"""What live recording raises: infra failures (our side or the network) and live misses (the model's URL)."""

from __future__ import annotations

from miroenv.tools.base import InfraFailure
from miroenv.web.base import NotInSnapshotError


class RecordingError(InfraFailure):
    """A live search or fetch failed (timeout, unreachable host, HTTP error after retries, browser crash).

    Tools report it as an `infra` observation, so a trainer can mask the episode instead of blaming the policy.
    """


class LiveMissError(NotInSnapshotError):
    """The live web has nothing to record at this URL (HTTP 404/410, a refused address, an unsupported scheme).

    The message is the snapshot's own not-in-snapshot message, so a replay of the episode reads the same text;
    `reason` says what actually happened.
    """

    def __init__(self, url: str, reason: str, kind: str = "page", suggestion: str | None = None) -> None:
        super().__init__(url, kind=kind, suggestion=suggestion)
        self.reason = reason
