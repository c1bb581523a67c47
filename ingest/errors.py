class IngestError(ValueError):
    """A source file that cannot be parsed; the message says what is wrong with it."""
