"""Where a run happens: the host, or a Debian kernel booted under virtme-ng."""
