"""State: the tables' keyspace, the customer-state codec, model checkpoints. Imports only
the domain."""
