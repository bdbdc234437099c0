"""The REST API's shapes: request and response bodies, and the one error type."""
