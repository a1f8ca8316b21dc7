"""Model files as mstore reads them: headers only, by bounded parsers of its own, never executed.

- `tensors.py`: where the tensors of a file lie (safetensors, `.npz`/`torch.save` zips, `.npy`, joblib
  arrays, ONNX initializers, GGUF tensors), so that chunking can cut at their boundaries;
- `pickles.py`: which globals a pickle or joblib file would import, read from its opcodes as each loader
  reads them, and its verdict (safe / unsafe / unknown): the one public face of `pickleops.py` (opcodes,
  operands, limits), `picklescan.py` (a scan and its verdict), `joblibwrap.py` (joblib's array wrapper),
  `picklewalk.py` (the walker) and `picklefiles.py` (which files are pickles; compressed and zip ones);
- `allowlist.py`: the one reviewed table of exact (module, qualified name) pairs a safe pickle may import;
- `onnx.py`: the protobuf wire format of an ONNX model, walked for its initializers;
- `gguf.py`: the tensor table of a GGUF file;
- `binread.py`: the bounded cursor the ONNX and GGUF parsers read with.

Everything here is untrusted input: a malformed or hostile file is "not tensors", never an error that
stops a save, and no parser here imports the format's own package (tests/test_never_executes_models.py).
"""
