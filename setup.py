"""Builds the optional C reactor (namewire/transport/_native.c, Linux only).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no C
compiler, not Linux) the install still succeeds and namewire uses its pure-asyncio sockets.
With ``NAMEWIRE_REQUIRE_NATIVE=1`` in the environment it is required instead: the install fails
if it cannot be built, so that a CI build cannot fall back without anyone noticing.
"""

import os
import sys

from setuptools import Extension, setup

required = os.environ.get("NAMEWIRE_REQUIRE_NATIVE", "") == "1"
ext_modules = []
if sys.platform == "linux":
    ext_modules.append(
        Extension(
            "namewire.transport._native",
            ["namewire/transport/_native.c"],
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                # The C API's callback signatures take arguments most methods do not use.
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
                "-Werror=implicit-function-declaration",
            ],
            optional=not required,
        )
    )
elif required:
    sys.exit(f"NAMEWIRE_REQUIRE_NATIVE=1: the C reactor is Linux-only, and this is {sys.platform}")

setup(ext_modules=ext_modules)
