"""The frozen CLIP teacher (FLIP-MCL or vanilla CLIP) and the job that caches its outputs."""
