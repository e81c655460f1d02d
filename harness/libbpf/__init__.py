"""C sources of the libbpf CO-RE twins, shipped as package data."""
