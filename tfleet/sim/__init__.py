"""A faithful TensorFlow Serving simulator (gRPC model management, prediction, REST).

It reproduces the behaviour of tensorflow_model_server that a control plane has to live
with (shared/tfserving-wire.md, "Semantics"), without TensorFlow. Modules, from the state
machine outwards:

    modeldir   version directories and their sim.json
    policy     the availability-preserving version policy (pure)
    manager    aspired versions -> load / unload / retry -> version states
    source     the file-system source: which versions each model aspires to
    core       reload semantics, version labels, request routing
    model      the simulator's own "affine" model format
    grpc_services, rest, metrics   the wire
    runtime    the two background threads
    server     SimServer: everything wired together
    fixtures   make_model() for tests and demos

Import SimServer from tfleet.sim.server (kept out of here so that importing a helper such as
tfleet.sim.fixtures stays cheap).
"""
