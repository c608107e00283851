"""Shipping the student: ONNX export with a parity check, scorers for ONNX files and checkpoints,
an ONNX Runtime latency benchmark, and image-file prediction.

The ONNX contract (what phone code relies on): input ``image`` float32 N x 3 x 112 x 112, RGB,
already ImageNet-normalised; outputs ``logits`` (N x 2, [spoof, live]) and ``p_live`` (N);
the preprocessing and label convention are recorded in the model's metadata_props.
"""
