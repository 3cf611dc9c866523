"""The build of Bastion's C extensions; everything else is declared in pyproject.toml.

All use nothing but Python's C API: the masked-row rewriter, the commonest detector checks, the
rewrite of findings inside text values, and the relay's walk over message boundaries. Building
Bastion therefore needs a C compiler and Python's headers.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "bastion.masking._rowmask",
            ["src/bastion/masking/_rowmask.c"],
            extra_compile_args=FLAGS,
        ),
        Extension(
            "bastion.masking._confirm",
            ["src/bastion/masking/_confirm.c"],
            extra_compile_args=FLAGS,
        ),
        Extension(
            "bastion.masking._spans",
            ["src/bastion/masking/_spans.c"],
            extra_compile_args=FLAGS,
        ),
        Extension(
            "bastion.wire.postgres._walk",
            ["src/bastion/wire/postgres/_walk.c"],
            extra_compile_args=FLAGS,
        ),
    ]
)
