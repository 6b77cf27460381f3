"""Risk models: reference scores, ONNX builds and signed manifests."""
