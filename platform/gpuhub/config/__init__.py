"""The site settings file: ``sections`` (the generic TOML table loader), ``schema`` (every table and
key, with help text), and ``check`` (``gpuhub-settings check FILE``). The reference in docs/admin.md is
generated from the schema's help (``python -m gpuhub.docgen``)."""
