"""The Zarr v3 teacher store: layout, version, open/validate, writer, reader."""
