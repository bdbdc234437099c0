"""batchmt gateway: packs sentences from many callers into BatchPrompt prompts for a vLLM engine."""

__version__ = "0.1.0"

__all__ = ["__version__"]
