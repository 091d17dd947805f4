"""The engines checks share: each module does one job and imports nothing from
``policies.checks`` (checks build on engines, never the other way round). Matching
(``patterns``, with ``regex_shape`` and the stream ``prefilter``; ``spans`` are what they
produce), the trained detectors' tiers (``classifier``, ``heuristics``, ``encoder``, ``tiers``,
``evidence``), what a detector reads (``decode``, ``quotes``) and the arithmetic evaluator
(``arithmetic``)."""
