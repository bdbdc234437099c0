"""The HTTP front: the FastAPI app and its routes, the ASGI guard middleware, uvicorn, /docs, the dashboard."""
