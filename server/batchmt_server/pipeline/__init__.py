"""A translate request's way to the engine: gateway, translator, batcher, runner, ensemble, memory."""
