"""The one thing pyproject.toml cannot say: matnet's optional C kernels (matnet/_kernels.c).

``optional=True``: where no C compiler is available the build goes on without them, and matnet runs
its NumPy path (see matnet/_accel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "matnet._kernels",
            ["matnet/_kernels.c"],
            optional=True,
            # -fno-trapping-math lets GCC vectorize the ReLU mask's comparison; results are IEEE
            # either way (it only assumes nobody traps on floating-point exceptions).
            extra_compile_args=["-O3", "-fno-trapping-math"],
        )
    ]
)
