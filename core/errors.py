"""One exception type for problems a person caused and can fix; its message is shown as-is in one line."""


class UserError(Exception):
    """Bad input or missing resource, explained in one line for the UI and the CLI."""
