"""The engines checks share: each module does one job and knows nothing of policies or checks'
options. Matching (``patterns``, with ``regex_shape`` and the stream ``prefilter``), the trained detectors' tiers
(``classifier``, ``heuristics``, ``encoder``, ``tiers``, ``evidence``), what a detector reads
(``decode``, ``quotes``) and the arithmetic evaluator (``arithmetic``)."""
