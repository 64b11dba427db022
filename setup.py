"""Builds the text kernels' C extension (sentiment/text/kernels.pyx); pyproject.toml
holds everything else about the package."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    # -ffp-contract=off: no fused multiply-add, so the finishing arithmetic
    # rounds exactly as numpy's does.
    [Extension("sentiment.text.kernels", ["sentiment/text/kernels.pyx"],
               extra_compile_args=["-O3", "-ffp-contract=off"])],
    compiler_directives={"language_level": 3},
))
