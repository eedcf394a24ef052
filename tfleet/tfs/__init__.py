"""TensorFlow Serving adapter: wire-compatible messages (pb/), value types and the gRPC client."""
