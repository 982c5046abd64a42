"""The one base class for errors whose message is written for the user."""


class StudioError(RuntimeError):
    """An expected failure (bad input, broken plugin, tampered model): show the message, carry on.

    The CLI prints it as one line and exits non-zero; the window shows it in the messages.
    """
