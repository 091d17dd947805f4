"""The running gateway: config, keys, policies, upstreams, audit sink and live feed.

One ``Gateway`` per process. Routes (``gateway.app``) and the LiteLLM plugin
(``gateway.litellm_plugin``) both open requests through ``open_session`` and close them
through ``finish``, so a request is audited the same way whichever front door it used.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from audit.record import AuditRecord
from audit.write.alerts import Alerter
from gateway.audit_sink import make_sink
from gateway.auth import KeyStore, Principal
from gateway.config import GatewayConfig
from gateway.fleet import FleetSync
from gateway.heartbeat import Heartbeat, PolicyMap
from gateway.live import LiveHub
from gateway.metrics import PrometheusEndpoint
from gateway.pipeline.session import GuardSession
from gateway.ratelimit import RateLimiter
from gateway.upstream.router import Upstreams
from gateway.warmup import WARMUP
from policies.compiled import CompiledPolicy
from policies.reload import PolicyStore

if TYPE_CHECKING:
    from audit.telemetry import Telemetry

log = logging.getLogger("warden.gateway")


class Gateway:
    def __init__(self, config: GatewayConfig, *, with_upstreams: bool = True) -> None:
        self.config = config
        self.keys = KeyStore(config)
        self.default_policy = config.resolve(config.policy)
        self.policies = PolicyStore(sorted(config.policy_paths()))
        self.upstreams = Upstreams(config) if with_upstreams else None
        self.live = LiveHub()
        self.limiter = RateLimiter(config.redis_url)
        self.audit = make_sink(config)
        self.fleet = FleetSync(self)
        self._alerter: Alerter | None = None
        self._alerter_lock = threading.Lock()
        self._warm_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.heartbeat: Heartbeat | None = None
        #: ``/metrics``: a pull reader on this gateway's OpenTelemetry instruments
        self.prometheus = PrometheusEndpoint()
        self.telemetry: Telemetry | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        from audit import telemetry

        self.telemetry = telemetry.configure(
            self.config.telemetry.exporter,
            service_name=self.config.telemetry.service_name,
            metric_readers=[self.prometheus.reader],
        )
        if self.config.policy_reload:
            self.policies.watch()
        self.audit.start()  # in the background: the database is not needed to answer
        self.fleet.start()  # keys and policy activations from the database, once it is there
        self._start_heartbeat()
        # Heavy libraries (litellm, presidio + spaCy) load in the background so the gateway
        # answers /health at once; a request that needs one first waits for its import lock.
        self._warm_thread = threading.Thread(target=self._warm, name="warden-warm", daemon=True)
        self._warm_thread.start()
        if self.config.source is not None and self.config.policy_reload:
            threading.Thread(target=self._watch_keys, name="warden-keys-watch", daemon=True).start()

    def _start_heartbeat(self) -> None:
        """Report the policy versions this replica runs in the database (``gateway.heartbeat``)."""
        from audit.db import make_engine

        def running() -> PolicyMap:
            return {path.name: {"name": p.name, "version": p.version} for path, p in self.policies.items()}

        try:
            self.heartbeat = Heartbeat(
                make_engine(self.config.resolved_database_url()),
                running,
                ready=lambda: self.audit.state in ("ready", "off", "failed"),
            )
        except Exception:  # an unusable URL is reported by the audit sink; the gateway still serves
            log.exception("replica heartbeat disabled")
            return
        self.policies.on_load(lambda _: self.heartbeat.beat_soon() if self.heartbeat else None)
        self.heartbeat.start()

    def _watch_keys(self) -> None:
        """Reload the API keys when the config file changes (``warden keys create|revoke``).
        Only keys are taken from the new file; other settings need a restart. Watches the file
        alone, not its folder (which may hold the database)."""
        from policies.reload import FileWatch

        source = self.config.source
        assert source is not None
        FileWatch([source], lambda _: self._reload_keys(source), self._stop).run()

    def _reload_keys(self, source: Path) -> None:
        from gateway.config import load_config
        from policies.yamlio import YamlModelError

        try:
            self.keys.set_config(load_config(source))
        except YamlModelError as exc:
            log.error("config %s rejected, keeping the current keys:\n%s", source, exc)
            return
        log.info("API keys reloaded from %s", source)

    def _warm(self) -> None:
        with WARMUP.running():
            self._warm_all()

    def _warm_all(self) -> None:
        try:
            if self.upstreams is not None and self.upstreams.needs_litellm:
                from gateway.upstream.litellm_adapter import warm

                warm()
            for policy in self.policies.all():
                policy.warm()
        except Exception:
            log.exception("background warm-up failed; checks will load on first use")

    async def stop(self) -> None:
        self._stop.set()
        self.fleet.stop()
        self.policies.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.upstreams is not None:
            await self.upstreams.aclose()
        await self.limiter.aclose()
        self.audit.close()
        if self._alerter is not None:
            self._alerter.close()

    # -- requests --------------------------------------------------------------------------

    def policy_for(self, principal: Principal) -> CompiledPolicy:
        return self.policies.get(Path(principal.policy) if principal.policy else self.default_policy)

    def open_session(
        self,
        principal: Principal,
        *,
        request_id: str,
        endpoint: str,
        model: str,
        stream: bool,
        client_addr: str | None,
    ) -> GuardSession:
        tenant = principal.tenant
        return GuardSession.start(
            self.policy_for(principal),
            request_id=request_id,
            tenant=tenant,
            key_id=principal.key_id,
            endpoint=endpoint,
            model=model,
            stream=stream,
            client_addr=client_addr,
            listener=lambda rid, step: self.live.publish(rid, tenant, step),
        )

    def finish(self, record: AuditRecord) -> None:
        from audit import telemetry

        try:
            telemetry.emit_record_spans(record)
            # This gateway's instruments: another gateway configured later in the same process
            # (tests, the demo) must not take its counts.
            telemetry.record_metrics(record, self.telemetry)
        except Exception:  # telemetry must never cost a request its audit record
            log.exception("telemetry failed for %s", record.request_id)
        self.audit.submit(record)
        tokens = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
        principal = self.keys.by_id(record.key_id) if tokens else None
        if principal is not None and principal.tpm:
            self.limiter.spend_tokens_soon(record.key_id, tokens)
        self._alert(record)

    def _alert(self, record: AuditRecord) -> None:
        """Hand the record to the alerter when its policy has ``alerts:`` (a queue put)."""
        for policy in self.policies.all():
            settings = policy.policy.alerts
            if settings is not None and policy.version == record.policy_version:
                alerter = self._alerter
                if alerter is None:
                    with self._alerter_lock:  # the LiteLLM plugin may finish requests on other threads
                        if self._alerter is None:
                            self._alerter = Alerter(writer_stats=self.audit.writer_stats)
                        alerter = self._alerter
                alerter.observe(record, settings)
                return
