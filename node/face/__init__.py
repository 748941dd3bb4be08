"""Face pipeline: detection, alignment, quality checks and ArcFace embeddings on ONNX Runtime."""
