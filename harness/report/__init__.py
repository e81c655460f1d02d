"""Run directories and what people read from them: CSV, summary, plots, flame graphs."""
