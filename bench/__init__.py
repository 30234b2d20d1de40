"""kfgpu benchmarks: ``python -m bench [NAME ...] [--list]``; see bench/README.md."""
