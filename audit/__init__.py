"""Durable, tamper-evident audit records: one per request, with its ordered steps.

Entry points (import the module you need; this package imports nothing by itself):

* ``audit.record`` - the typed record the pipeline fills in (the contract);
* ``audit.writer.AuditWriter`` - ``start`` / ``submit`` / ``submit_review`` / ``flush`` /
  ``close``, and ``replay_spool`` for ``warden audit replay-spool``;
* ``audit.db`` - ``make_engine``, ``upgrade`` (``warden db upgrade``), ``ensure_schema``;
* ``audit.verify.verify`` and ``audit.prune.prune`` - ``warden audit verify|prune``;
* ``audit.partitions`` - the monthly partitions of ``audit_requests`` on PostgreSQL;
* ``audit.broker`` (NATS JetStream: ``Publisher``, ``Consumer``) and ``audit.drain.Drain`` -
  the optional broker sink and ``warden audit writer --from-nats``;
* ``audit.export`` - ``get_request``, ``iter_records``, ``write_jsonl``, ``write_csv``;
* ``audit.fingerprint.fingerprint`` - keyed fingerprints of redacted values;
* ``audit.telemetry`` and ``audit.semconv`` - OpenTelemetry set-up, names and metrics;
* ``audit.models`` - the tables (also users and policy versions, for the dashboard).
"""
