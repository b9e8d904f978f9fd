"""`gradnet-benchmark`: networks and classical baselines on identical noisy images, with quality and cost figures.

Run `python -m gradnet_arch.benchmark --help`; the pieces (test sets, model loading, cost, report) are importable.
"""
