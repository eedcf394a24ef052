"""Generated protobuf modules (wire-compatible TF Serving subset); see proto/generate.py."""
