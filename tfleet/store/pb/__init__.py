"""Generated protobuf modules (wire-compatible subset of etcd's Watch API); see proto/generate.py."""
