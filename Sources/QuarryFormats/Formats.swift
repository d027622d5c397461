// Model and data formats: ONNX import (Onnx/), safetensors, .npy / .npz. Every reader validates what
// it reads against the file's size before touching memory and throws QuarryError.file naming the file.
