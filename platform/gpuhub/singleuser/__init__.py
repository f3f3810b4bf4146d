"""The single-user side of gpuhub: what runs inside a user's container."""
