"""Glossaries (issue 27): per-key term lists that steer translations (``/v1/glossaries``)."""
