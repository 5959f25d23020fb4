"""The engine: folds one event into a shop's state and runs the models over it. Imports
the models, state and domain; nothing of the stream or the API."""
