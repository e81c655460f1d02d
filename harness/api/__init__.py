"""The library's capabilities, one module each: trace (and again, plan), crosscheck, matrix,
fleet, bench; the one planner both trace and crosscheck go through (planner); the inputs they
share (inputs). `harness` re-exports the public names; the CLI calls them and only prints."""
