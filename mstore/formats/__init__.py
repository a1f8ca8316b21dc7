"""Model-file headers (safetensors, zip, npy, pickle, ONNX, GGUF), parsed by bounded readers of mstore's own:
untrusted bytes, never executed."""
