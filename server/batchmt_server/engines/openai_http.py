"""An engine reached over HTTP: any OpenAI-compatible ``/v1/completions`` server
(e.g. ``python -m vllm.entrypoints.openai.api_server``)."""

from __future__ import annotations

import httpx

from .base import Completion, EngineError, GenerationParams, estimate_tokens

__all__ = ["HTTPEngine"]


class HTTPEngine:
    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0, transport: httpx.AsyncBaseTransport | None = None,
                 send_priority: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self._model = model
        self.model_name = model or "unknown"
        self.send_priority = send_priority  # the server runs vLLM's priority scheduling
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, transport=transport,
                                         timeout=httpx.Timeout(timeout, connect=10.0),
                                         limits=httpx.Limits(max_connections=512, max_keepalive_connections=128))

    async def start(self) -> None:
        """Learn the served model name when none was given."""
        if self._model is None:
            try:
                r = await self._client.get("/v1/models")
                r.raise_for_status()
                self._model = r.json()["data"][0]["id"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                raise EngineError(f"cannot list models at {self.base_url}/v1/models: {exc}") from exc
            self.model_name = self._model.rstrip("/").rsplit("/", 1)[-1]

    async def ready(self) -> bool:
        try:
            r = await self._client.get("/v1/models", timeout=5.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        body: dict = {"model": self._model, "prompt": prompt, "max_tokens": params.max_tokens,
                      "temperature": params.temperature, "stop": list(params.stop)}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.cache_salt is not None:
            body["cache_salt"] = params.cache_salt
        if params.logprobs:
            body["logprobs"] = 0
        if self.send_priority and params.priority:
            body["priority"] = params.priority
        try:
            r = await self._client.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:  # third-party errors are translated here, once
            raise EngineError(f"{type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise EngineError(f"engine answered {r.status_code}: {r.text[:300]}")
        try:
            data = r.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            lp = (choice.get("logprobs") or {}).get("token_logprobs")
            offsets = (choice.get("logprobs") or {}).get("text_offset")
            return Completion(
                text=choice["text"], finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                cached_prompt_tokens=int(details.get("cached_tokens") or 0),
                token_logprobs=[x if x is not None else 0.0 for x in lp] if lp else None,
                token_offsets=[int(x) for x in offsets] if lp and offsets and len(offsets) == len(lp) else None,
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EngineError(f"malformed completion from engine: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
