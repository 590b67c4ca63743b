"""Code shared by the actions of the hello pack."""


def greeting(name):
    return "Hello, %s" % name
