"""Delivery: scheduling due callbacks, dispatching them in order, and the HTTP transports."""
