"""The bpftrace builtins a spec may use as map keys; apart from the spec model so that the
command line can name them without importing the model and its expression parser."""

BUILTIN_KEYS = ("kstack", "ustack", "comm", "pid", "tid", "cpu", "cgroup", "retval", "func")

# TASK_COMM_LEN - 1: the kernel keeps the first 15 bytes of a command name (`comm`).
COMM_BYTES = 15
