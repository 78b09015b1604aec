"""Builds the optional C reactor (namewire/transport/_native.c, Linux only), ships the example
programs inside the package (``namewire._examples``, for ``namewire demo`` outside a checkout),
and makes the package index's long description from README.md.

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no C
compiler, not Linux) the install still succeeds, prints a WARNING saying so in the build output
(``pip install -v`` shows it), and namewire uses its pure-asyncio sockets
(``namewire --version`` says which sockets an install uses, and why).
With ``NAMEWIRE_REQUIRE_NATIVE=1`` in the environment it is required instead: the install fails
if it cannot be built, so that a CI build cannot fall back without anyone noticing.
"""

import os
import re
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
required = os.environ.get("NAMEWIRE_REQUIRE_NATIVE", "") == "1"


def _warn_not_built(why: object) -> None:
    for line in (
        f"the C reactor (namewire/transport/_native.c) was NOT built: {why}",
        "namewire will use its pure-asyncio sockets (same behaviour, slower); install a C "
        "compiler (gcc) and reinstall to build it",
    ):
        print(f"namewire: WARNING: {line}", file=sys.stderr, flush=True)


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed build of the reactor into a loud warning (unless required)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils' platform error, OSError...
            if required:
                raise
            _warn_not_built(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # a compile or link error
            if required:
                raise
            _warn_not_built(exc)


def _long_description() -> str:
    """README.md without what a package index cannot show: relative images become a sentence."""
    text = (HERE / "README.md").read_text(encoding="utf-8")
    return re.sub(
        r"!\[([^\]]*)\]\((?!https?://)([^)]+)\)",
        r"(*\1*: the image is \2 in the source distribution.)",
        text,
    )


ext_modules = []
if sys.platform == "linux":
    ext_modules.append(
        Extension(
            "namewire.transport._native",
            ["namewire/transport/_native.c"],
            depends=["namewire/transport/_native_msgpack.h"],
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                # The C API's callback signatures take arguments most methods do not use.
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
                "-Werror=implicit-function-declaration",
            ],
        )
    )
elif required:
    sys.exit(f"NAMEWIRE_REQUIRE_NATIVE=1: the C reactor is Linux-only, and this is {sys.platform}")
else:
    _warn_not_built(f"it is Linux-only, and this is {sys.platform}")

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": OptionalBuildExt},
    packages=[*find_packages(include=["namewire", "namewire.*"]), "namewire._examples"],
    package_dir={"namewire._examples": "examples"},
    long_description=_long_description(),
    long_description_content_type="text/markdown",
)
