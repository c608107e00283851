"""Shipping the student: every export format from one deployable module (``deployable.load_deployable``),
a format registry (``formats``: ONNX, ORT, ExecuTorch, LiteRT, Core ML; int8 where the toolchain allows),
verification in each format's own runtime (``export``), scorers per runtime for evaluate/predict/bench
(``runtimes``), a latency benchmark and image-file prediction.

The contract phone code relies on: input ``image`` float32 N x 3 x 112 x 112, RGB, already
ImageNet-normalised; outputs ``logits`` (N x 2, [spoof, live]) and ``p_live`` (N); the preprocessing,
label order and validation threshold are in each file's metadata (``metadata``).
"""
