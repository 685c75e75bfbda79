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
            # -fno-trapping-math and -fno-math-errno let GCC vectorize the ReLU mask's comparison
            # and sqrt (nobody traps on floating-point exceptions or reads errno here);
            # -ffp-contract=off keeps every product and sum rounded apart, as in NumPy.
            extra_compile_args=[
                "-O3",
                "-fno-trapping-math",
                "-fno-math-errno",
                "-ffp-contract=off",
            ],
        )
    ]
)
