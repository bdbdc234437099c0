"""An engine reached over HTTP: any OpenAI-compatible ``/v1/completions`` server
(e.g. ``python -m vllm.entrypoints.openai.api_server``), alone (:class:`HTTPEngine`) or as a pool of
replicas (:class:`EnginePool`: least outstanding prompts, health checks, ejection and failover)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import httpx

from .base import Completion, EngineError, GenerationParams, estimate_tokens

__all__ = ["EnginePool", "HTTPEngine", "ReplicaCollector", "ReplicaStats", "ReplicaUnavailable", "parse_engine_urls"]

log = logging.getLogger(__name__)

#: stop strings sent: the OpenAI completions API (and servers that copy it, e.g. TGI) reject more than four; the
#: template puts the ones that must be honoured first (Template.stop_for)
MAX_STOP = 4


class ReplicaUnavailable(EngineError):
    """The server did not answer the prompt (refused or dropped connection, timeout, 5xx): another replica may.

    ``dead`` is true when the connection itself failed (the server is gone), false for timeouts and 5xx."""

    def __init__(self, message: str, dead: bool) -> None:
        super().__init__(message)
        self.dead = dead


#: transport errors that mean the server is gone (not merely slow)
_DEAD = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectTimeout)


def parse_engine_urls(value: str | Iterable[str] | None) -> list[str]:
    """Engine URLs from a comma-separated string (``BATCHMT_ENGINE_URL=http://a:8000,http://b:8000``) or a
    list (``--engine-url`` given several times), without blanks and duplicates, in order."""
    items = [value] if isinstance(value, str) else list(value or [])
    urls: list[str] = []
    for item in items:
        for url in item.split(","):
            url = url.strip().rstrip("/")
            if url and url not in urls:
                urls.append(url)
    return urls


class HTTPEngine:
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        send_priority: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self._model = model
        self.model_name = model or "unknown"
        self.send_priority = send_priority  # the server runs vLLM's priority scheduling
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )

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

    async def health(self, timeout: float = 5.0) -> bool:
        """vLLM's ``GET /health`` (200 while the engine runs); ``/v1/models`` for servers without it.
        Raises :class:`ReplicaUnavailable` (``dead``) when the server refuses the connection."""
        try:
            r = await self._client.get("/health", timeout=timeout)
            if r.status_code == 404:
                r = await self._client.get("/v1/models", timeout=timeout)
            return r.status_code == 200
        except _DEAD as exc:
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise ReplicaUnavailable(f"{self.base_url}: {type(exc).__name__}: {exc}", dead=True) from exc
            return False
        except httpx.HTTPError:
            return False

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        body: dict = {
            "model": self._model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "stop": list(params.stop[:MAX_STOP]),
        }
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
            raise ReplicaUnavailable(
                f"{self.base_url}: {type(exc).__name__}: {exc}", dead=isinstance(exc, _DEAD)
            ) from exc
        if r.status_code >= 500:
            raise ReplicaUnavailable(f"{self.base_url} answered {r.status_code}: {r.text[:300]}", dead=False)
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
                text=choice["text"],
                finish_reason=choice.get("finish_reason"),
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


@dataclass(frozen=True)
class ReplicaStats:
    """One replica of an :class:`EnginePool`, as the metrics export it (label ``replica`` = its URL)."""

    replica: str
    healthy: bool
    outstanding: int  # prompts sent and not answered yet
    prompts: int  # prompts sent to it, re-sends included
    errors: int  # prompts it failed (refused, dropped, timed out, 5xx, or a 4xx)
    ejections: int  # times it was taken out of the rotation
    resent: int  # prompts taken away from it (it failed or was ejected) and sent to another replica


class _Replica:
    def __init__(self, engine: HTTPEngine) -> None:
        self.engine = engine
        self.url = engine.base_url
        self.healthy = False
        self.outstanding = 0
        self.prompts = self.errors = self.ejections = self.resent = 0
        self.consecutive_errors = 0
        self.failed_checks = 0
        #: set when the replica is ejected; the prompts in flight on it wait on it and are re-sent elsewhere
        self.ejected = asyncio.Event()

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            self.url, self.healthy, self.outstanding, self.prompts, self.errors, self.ejections, self.resent
        )


class EnginePool:
    """Several OpenAI-compatible servers serving the same model, used as one engine.

    - each prompt goes to the healthy replica with the fewest outstanding prompts (ties in turn);
    - a background task checks every replica's ``/health`` each ``health_interval_s``; a replica is ejected
      when its connection is refused or dropped, after ``failed_checks_to_eject`` failed checks in a row, or
      after ``errors_to_eject`` prompts in a row answered by a timeout or a 5xx, and re-admitted at its first
      good check;
    - a prompt whose replica failed (no answer) or was ejected while it was in flight is re-sent to another
      replica, at most ``max_resends`` times; a prompt answered is never sent again, so every sentence is
      answered once. A 4xx is the prompt's fault, not the replica's: it is raised, not re-sent;
    - with no healthy replica, a prompt waits up to ``no_replica_wait_s`` for one to come back.
    """

    def __init__(
        self,
        urls: Sequence[str],
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 300.0,
        health_interval_s: float = 2.0,
        health_timeout_s: float = 5.0,
        failed_checks_to_eject: int = 2,
        errors_to_eject: int = 3,
        max_resends: int | None = None,
        no_replica_wait_s: float = 60.0,
        send_priority: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        urls = parse_engine_urls(urls)
        if not urls:
            raise ValueError("an engine pool needs at least one URL")
        self._replicas = [
            _Replica(
                HTTPEngine(
                    u, model=model, api_key=api_key, timeout=timeout, transport=transport, send_priority=send_priority
                )
            )
            for u in urls
        ]
        self._model = model
        self.model_name = self._replicas[0].engine.model_name
        self.health_interval_s = health_interval_s
        self.health_timeout_s = health_timeout_s
        self.failed_checks_to_eject = failed_checks_to_eject
        self.errors_to_eject = errors_to_eject
        self.max_resends = 2 * len(urls) if max_resends is None else max_resends
        self.no_replica_wait_s = no_replica_wait_s
        self._changed = asyncio.Condition()
        self._turn = itertools.count()
        self._checker: asyncio.Task | None = None

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    def replica_stats(self) -> list[ReplicaStats]:
        return [r.stats() for r in self._replicas]

    # --- life cycle

    async def start(self) -> None:
        """Check every replica once; learn the served model from the first one that answers. Raises
        :class:`EngineError` when none answers. Replicas down at start are admitted when they come up."""
        await self._check_all()
        if not any(r.healthy for r in self._replicas):
            raise EngineError(f"no engine replica answers /health: {', '.join(self.urls)}")
        if self._model is None:
            errors = []
            for r in (r for r in self._replicas if r.healthy):
                try:
                    await r.engine.start()
                except EngineError as exc:
                    errors.append(str(exc))
                    continue
                self._model = r.engine._model
                break
            else:
                raise EngineError("; ".join(errors))
        self.model_name = (self._model or "unknown").rstrip("/").rsplit("/", 1)[-1]
        for r in self._replicas:
            r.engine._model, r.engine.model_name = self._model, self.model_name
        self._checker = asyncio.create_task(self._check_loop(), name="engine-pool-health")

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
            self._checker = None
        await asyncio.gather(*(r.engine.close() for r in self._replicas), return_exceptions=True)

    async def ready(self) -> bool:
        return any(r.healthy for r in self._replicas)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    # --- prompts

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        resends = 0
        while True:
            replica = await self._pick()
            ejected = replica.ejected
            replica.outstanding += 1
            replica.prompts += 1
            call = asyncio.ensure_future(replica.engine.generate(prompt, params))
            watch = asyncio.ensure_future(ejected.wait())
            try:
                done, _ = await asyncio.wait((call, watch), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                call.cancel()
                raise
            finally:
                replica.outstanding -= 1
                watch.cancel()
            if call in done:
                try:
                    completion = call.result()
                except ReplicaUnavailable as exc:
                    replica.errors += 1
                    replica.consecutive_errors += 1
                    if exc.dead or replica.consecutive_errors >= self.errors_to_eject:
                        await self._eject(replica, str(exc))
                    reason = str(exc)
                except EngineError:
                    replica.errors += 1
                    raise
                else:
                    replica.consecutive_errors = 0
                    return completion
            else:  # ejected while this prompt was in flight: its answer will not come, send it elsewhere
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
                reason = f"{replica.url} was ejected"
            replica.resent += 1
            resends += 1
            if resends > self.max_resends:
                raise EngineError(f"no replica answered after {resends} sends; last: {reason}")
            log.info("re-sending a prompt away from %s (%s)", replica.url, reason)

    async def _pick(self) -> _Replica:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: any(r.healthy for r in self._replicas)), self.no_replica_wait_s
                )
            except TimeoutError:
                raise EngineError(
                    f"no healthy engine replica for {self.no_replica_wait_s:.0f} s ({', '.join(self.urls)})"
                ) from None
            healthy = [r for r in self._replicas if r.healthy]
            least = min(r.outstanding for r in healthy)
            tied = [r for r in healthy if r.outstanding == least]
            return tied[next(self._turn) % len(tied)]

    # --- health

    async def _eject(self, replica: _Replica, reason: str) -> None:
        async with self._changed:
            if not replica.healthy:
                return
            replica.healthy = False
            replica.ejections += 1
            replica.ejected.set()
            replica.ejected = asyncio.Event()
            self._changed.notify_all()
        log.warning("engine replica %s ejected: %s", replica.url, reason)

    async def _admit(self, replica: _Replica) -> None:
        async with self._changed:
            if replica.healthy:
                return
            replica.healthy = True
            replica.consecutive_errors = 0
            self._changed.notify_all()
        log.info("engine replica %s admitted", replica.url)

    async def _check(self, replica: _Replica) -> None:
        try:
            ok = await replica.engine.health(timeout=self.health_timeout_s)
            dead = False
        except ReplicaUnavailable:
            ok, dead = False, True
        if ok:
            replica.failed_checks = 0
            await self._admit(replica)
            return
        replica.failed_checks += 1
        if replica.healthy and (dead or replica.failed_checks >= self.failed_checks_to_eject):
            await self._eject(
                replica, "connection refused" if dead else f"{replica.failed_checks} failed health checks"
            )

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self._replicas))

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await self._check_all()
            except Exception:  # pragma: no cover - a health check must never end the loop
                log.exception("engine pool health check failed")


class ReplicaCollector:
    """A prometheus_client collector of an :class:`EnginePool`'s replicas, label ``replica`` (the URL).

    ``engine`` is called at scrape time (the gateway builds its engine after its registry); it yields
    nothing unless the engine is a pool."""

    def __init__(self, engine: Callable[[], object]) -> None:
        self._engine = engine

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        pool = self._engine()
        if not isinstance(pool, EnginePool):
            return
        stats = pool.replica_stats()
        up = GaugeMetricFamily(
            "batchmt_engine_replica_up",
            "1 while the engine replica is in the pool's rotation (healthy), 0 while ejected",
            labels=["replica"],
        )
        out = GaugeMetricFamily(
            "batchmt_engine_replica_outstanding_prompts",
            "Prompts sent to the replica and not answered yet",
            labels=["replica"],
        )
        families: list[GaugeMetricFamily | CounterMetricFamily] = [up, out]
        for name, doc, field in (
            ("batchmt_engine_replica_prompts", "Prompts sent to the replica, re-sends included", "prompts"),
            (
                "batchmt_engine_replica_errors",
                "Prompts the replica failed (refused, dropped, timed out, 5xx, 4xx)",
                "errors",
            ),
            ("batchmt_engine_replica_ejections", "Times the replica was taken out of the rotation", "ejections"),
            (
                "batchmt_engine_replica_resent_prompts",
                "Prompts taken away from the replica (it failed or was "
                "ejected with them in flight) and sent to another one",
                "resent",
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["replica"])
            for s in stats:
                family.add_metric([s.replica], getattr(s, field))
            families.append(family)
        for s in stats:
            up.add_metric([s.replica], 1 if s.healthy else 0)
            out.add_metric([s.replica], s.outstanding)
        yield from families
