"""Signed webhooks for segment changes: endpoints registered over the HTTP API (stored on
the compacted webhooks topic), and the delivery process ``segstream webhooks`` that POSTs
every matching change to them, signed after the Standard Webhooks specification
(https://www.standardwebhooks.com, ``spec/standard-webhooks.md``).

This package sits beside ``segstream.stream`` and ``segstream.api``: it reads and writes
Kafka and is read by the API; nothing below it imports it.
"""
