"""The one error type for bad user input: the CLI prints it on one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: the message names the key, the value and what is allowed."""


def bad_value(key, value, allowed):
    """Build the standard one-line message for a bad setting."""
    return UserError(f"{key}={value!r} is not allowed: {allowed}")


def first_line(err, limit=200):
    """An exception's first line (at most ``limit`` characters), or its type's name when it says nothing."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
