"""The planner: a raw folder, this device and a time budget -> a ready experiment config.

fingerprint.py (the doctor's scan plus object sizes and groups), groups.py (file-name groups,
group-held-out splits), probe.py (step times on this device), rules.py and choices.py (the
plan), write.py (the YAML), __main__.py (``python -m seg.plan``). The training pipeline never
imports this package.
"""
