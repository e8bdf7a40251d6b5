"""Domain errors raised by the engine; vectors.api.errors maps each to an HTTP answer."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ModelLoadError(EngineError):
    """The model could not be loaded from the configured path or hub id."""


class ArtifactUnreadable(ModelLoadError):
    """An exported artifact on disk that the runtime cannot read (truncated or damaged): export it again."""


class QueueFull(EngineError):
    """The queue holds as many inputs as allowed; the caller should retry later."""

    def __init__(self, queued_inputs: int, limit: int) -> None:
        super().__init__(f"queue full: {queued_inputs} inputs waiting, limit {limit}")
        self.queued_inputs = queued_inputs
        self.limit = limit


class QueueTimeout(EngineError):
    """The request waited past the queue deadline before its batch started."""


class EngineStuck(EngineError):
    """A model call ran past the inference deadline; the engine is not healthy."""


class EngineStopped(EngineError):
    """The engine is draining or stopped and takes no new work."""


class EncodeFailed(EngineError):
    """The model raised while encoding this request's inputs."""


class UnknownModel(EngineError):
    """The request named a model this service does not serve."""

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"model {name!r} is not served here; valid models: {', '.join(valid)}")
        self.name = name
        self.valid = valid
