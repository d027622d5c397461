// Model and data formats: ONNX, safetensors, .npy/.npz.
