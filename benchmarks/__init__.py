"""asv benchmark suites of vnp (see docs/benchmarks.md); asv imports every module here to discover them."""
