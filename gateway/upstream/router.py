"""Which upstream serves which public model name."""

from __future__ import annotations

from collections import defaultdict

from gateway.config import Deployment, GatewayConfig
from gateway.errors import ModelNotFound
from gateway.upstream.base import Upstream
from gateway.upstream.fast_path import FastUpstream, is_fast
from gateway.upstream.litellm_adapter import LiteLLMUpstream
from gateway.upstream.transport import Transports


class Upstreams:
    def __init__(self, config: GatewayConfig) -> None:
        s = config.upstream
        self.transports = Transports(s)
        groups: dict[str, list[Deployment]] = defaultdict(list)
        for d in config.model_list:
            groups[d.model_name].append(d)
        with_fallbacks = {name for f in s.fallbacks for name in f}
        self._litellm = LiteLLMUpstream(config.model_list, s)
        self._by_model: dict[str, Upstream] = {}
        for name, deployments in groups.items():
            fast = s.fast_path and name not in with_fallbacks and all(is_fast(d) for d in deployments)
            self._by_model[name] = FastUpstream(deployments, s, self.transports) if fast else self._litellm
        self.created = dict.fromkeys(groups, 0)

    @property
    def needs_litellm(self) -> bool:
        return any(isinstance(u, LiteLLMUpstream) for u in self._by_model.values())

    def names(self) -> list[str]:
        return sorted(self._by_model)

    def get(self, model: str) -> Upstream:
        try:
            return self._by_model[model]
        except KeyError:
            raise ModelNotFound(f"The model '{model}' does not exist or is not served here.", param="model") from None

    async def aclose(self) -> None:
        await self.transports.aclose()
