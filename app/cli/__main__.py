"""``python -m app.cli`` (what the benchmarks and subprocess tests run) = ``pbf-headless``."""

from app.cli import main

main()
