"""The one error type for bad user input: the CLI prints it on one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: the message names the key, the value and what is allowed."""


def bad_value(key, value, allowed):
    """Build the standard one-line message for a bad setting."""
    return UserError(f"{key}={value!r} is not allowed: {allowed}")
