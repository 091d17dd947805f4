"""Durable, tamper-evident audit records: one per request, with its ordered steps.

The package has two paths and what they share (import the module you need; no package here
imports anything by itself):

* ``audit.write`` - records on their way in: normalized (``prepared``), linked into a chain and
  committed (``store``, ``bulk``) by the writer (``writer.AuditWriter``: ``start`` / ``submit`` /
  ``submit_review`` / ``flush`` / ``close``, ``replay_spool``), or spooled (``spool``), or
  handed to NATS JetStream (``broker``) for a writer process (``drain.Drain``, ``warden audit
  writer --from-nats``); alerts observe them on the way (``alerts``).
* ``audit.read`` - records once stored: ``verify`` and ``prune`` (``warden audit verify|prune``),
  ``export`` (``get_request``, ``iter_records``, ``write_jsonl``, ``write_csv``), ``report`` and
  ``report_render``, ``siem`` (OCSF, syslog), ``anchors`` (signed chain heads), ``erasure``
  (retention), and ``services`` (those that run beside a gateway's writer).
* shared by both: ``audit.record`` - the typed record the pipeline fills in (the contract) and
  its enums; ``audit.review`` - a reviewer's ruling; ``audit.canonical`` and
  ``audit.commitments`` - the bytes a hash covers; ``audit.chain`` - the hashes; ``audit.rows``
  - the stored rows back to records; ``audit.models`` - the tables (also users and policy
  versions, for the dashboard); ``audit.db`` - ``make_engine``, ``upgrade`` (``warden db
  upgrade``), ``ensure_schema``; ``audit.partitions`` - monthly partitions on PostgreSQL;
  ``audit.fingerprint`` and ``audit.keys`` - keyed fingerprints and the keys; ``audit.settings``;
  ``audit.telemetry`` and ``audit.semconv`` - OpenTelemetry set-up, names and metrics.
"""
