"""A sample for the outline tests: the line numbers below are asserted."""


class Animal(dict):
    """doc"""

    def __init__(self, name):
        self.name = name

    @property
    def speak(self):
        def inner():
            pass

        return inner


def top(x):
    return x
