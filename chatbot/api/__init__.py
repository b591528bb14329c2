"""The REST API channel (/api/v1/): a server calls a bot with an API key.

Views stay thin: authenticate the key, check limits, validate, call the answer
pipeline (or one conversations service), shape the JSON. See docs/api.md.
"""
