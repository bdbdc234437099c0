"""Texts into segments for the engine and back: sentences, placeholders, markup, documents."""
