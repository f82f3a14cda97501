"""The speed harness behind ``make bench`` (``python -m bench.speed.run``): every runtime and precision side by side with the peer."""
