"""TensorRT engine building (``build``) and the engine manifest check (``manifest``). TensorRT and pycuda are
imported inside functions only, so these modules import on machines without them."""
