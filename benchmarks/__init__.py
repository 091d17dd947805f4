"""Benchmarks: one script per question, each printing a table of side-by-side figures.

``python -m benchmarks.load`` measures what the gateway costs in throughput, latency, time to
first token, memory and start-up time, against the upstream itself and against LiteLLM Proxy.
"""
