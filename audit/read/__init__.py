"""The reading path: what works on records once they are stored. Verify, export, report and
stream them, check them against published chain heads, and retire them (``prune`` and
``erasure`` verify or keep the chains verifiable before they remove anything)."""
