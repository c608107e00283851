"""Frame sources: HDF5 frame packs, manifest CSV + image folder, FLIP/MCIO folders; synthetic data; ingest."""
