"""Faces in full camera frames: detectors (a registry), the crop policy (data) and the one function applying it.

The same three pieces serve ``fasd ingest faces`` (training crops) and ``fasd predict`` (deployment crops),
and the policy travels with the data: pack attrs -> student checkpoint -> exported metadata -> predict.
"""
