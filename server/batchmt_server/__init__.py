"""batchmt gateway: packs sentences from many callers into BatchPrompt prompts for a vLLM engine."""

from batchmt.version import __version__  # the one place the version is written

__all__ = ["__version__"]
