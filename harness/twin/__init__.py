"""The libbpf CO-RE twin: C sources, their build, and the loader that runs them."""
