"""Builds the optional C reactor (namewire/transport/_native.c, Linux only).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no C
compiler, not Linux) the install still succeeds and namewire uses its pure-asyncio sockets.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform == "linux":
    ext_modules.append(
        Extension(
            "namewire.transport._native",
            ["namewire/transport/_native.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
