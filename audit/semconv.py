"""Every OpenTelemetry name Warden uses: attributes, span names, metric names.

GenAI names follow the OpenTelemetry GenAI semantic conventions (still "development"
status upstream, so they are copied here rather than imported from the incubating module;
``tests/audit/test_audit_telemetry.py`` checks they still match). Warden's own are ``warden.*``.
Warden is a gateway, so for the model call it is the *server* side of the GenAI
conventions (``gen_ai.server.*`` metrics), and a client of its upstream.
"""

# ruff: noqa: S105 - "token" here is an LLM token, not a credential

from __future__ import annotations

from typing import Final

# -- GenAI semantic conventions --------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"

#: values of ``gen_ai.operation.name``
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_EMBEDDINGS: Final = "embeddings"
#: values of ``gen_ai.token.type``
TOKEN_INPUT: Final = "input"
TOKEN_OUTPUT: Final = "output"

# -- Warden's own ----------------------------------------------------------------------------
WARDEN_REQUEST_ID: Final = "warden.request_id"
WARDEN_TENANT: Final = "warden.tenant"
WARDEN_ENDPOINT: Final = "warden.endpoint"
WARDEN_VERDICT: Final = "warden.verdict"
WARDEN_STATUS: Final = "warden.status"
WARDEN_STAGE: Final = "warden.stage"
WARDEN_CHECK: Final = "warden.check"
WARDEN_CHECK_SCORE: Final = "warden.check.score"
WARDEN_CHECK_ENFORCED: Final = "warden.check.enforced"
WARDEN_CHECK_SPANS: Final = "warden.check.spans"
WARDEN_POLICY_NAME: Final = "warden.policy.name"
WARDEN_POLICY_VERSION: Final = "warden.policy.version"
WARDEN_STEP_SEQ: Final = "warden.step.seq"

# -- span names ------------------------------------------------------------------------------
#: the request span is named "{gen_ai.operation.name} {gen_ai.request.model}", as GenAI asks
SPAN_STAGE: Final = "warden.stage"
SPAN_CHECK: Final = "warden.check"

# -- metric names ----------------------------------------------------------------------------
METRIC_REQUESTS: Final = "warden.requests"
METRIC_CHECK_DURATION: Final = "warden.check.duration"
METRIC_REQUEST_DURATION: Final = "gen_ai.server.request.duration"
METRIC_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"

ENDPOINT_OPERATIONS: Final = {
    "/v1/chat/completions": OPERATION_CHAT,
    "/v1/completions": OPERATION_TEXT_COMPLETION,
    "/v1/embeddings": OPERATION_EMBEDDINGS,
}


def operation_for(endpoint: str) -> str:
    return ENDPOINT_OPERATIONS.get(endpoint, OPERATION_CHAT)
