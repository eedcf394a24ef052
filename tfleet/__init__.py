"""tfleet: a control plane for fleets of TensorFlow Serving hosts, coordinated through etcd."""

__version__ = "0.1.0"
