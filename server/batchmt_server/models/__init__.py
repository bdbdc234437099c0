"""The models: embedded GGUF models prepared for vLLM, and typed presets of engine arguments."""
