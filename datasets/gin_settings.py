"""gin bindings that leave our exceptions alone.

``gin.configurable`` re-raises every exception from inside the function with a
multi-line note appended, which would turn DatasetError's one-line messages into
three lines. ``configurable`` registers with gin only a collector of the bound
settings (it never raises) and calls the real function outside gin, with the
caller's arguments taking precedence over the bound ones.
"""
from __future__ import annotations

import functools
import inspect

import gin


def configurable(fn):
    signature = inspect.signature(fn)

    def bound_settings(**settings):
        return settings

    bound_settings.__name__ = bound_settings.__qualname__ = fn.__name__
    bound_settings.__module__ = fn.__module__
    bound_settings = gin.configurable(fn.__name__, module=fn.__module__)(bound_settings)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        arguments = dict(signature.bind_partial(*args, **kwargs).arguments)
        for name, parameter in signature.parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD and name in arguments:
                arguments.update(arguments.pop(name))  # flatten **options
        return fn(**{**bound_settings(), **arguments})

    return call
