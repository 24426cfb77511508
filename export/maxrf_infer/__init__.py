"""Torch-free ONNX runtime for scanner workstations: placeholder until implemented."""
