"""The domain: input events and their contracts, customer state, the snapshot the models
read, segment changes. Imports nothing of segstream but ``settings``."""
