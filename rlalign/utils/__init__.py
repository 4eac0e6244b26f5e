"""Helpers with no project imports: atomic files, Markdown tables, seeding, metrics logs, plots,
image grids, failpoints and benchmark timing (docs/architecture.md, layer 0)."""
