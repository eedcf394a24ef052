"""A faithful TensorFlow Serving simulator (gRPC model management, prediction, REST)."""
