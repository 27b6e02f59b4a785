"""EcoServe's gRPC services: thin shells over the `ecoserve` library."""
