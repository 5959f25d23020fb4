"""Running the real parts for tests, benchmarks and the chaos run: Kafka brokers, segstream
worker processes, and Kafka helpers to feed and read them."""
