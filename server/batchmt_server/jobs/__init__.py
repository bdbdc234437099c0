"""Batch jobs (OpenAI Batch API): /v1/files and /v1/batches, and the worker that runs their lines."""
