"""MNIST-1D through the two fronts of TabularClassifier: the package's float32 arrays (a numeric matrix:
a Standardize layer) and the same numbers as a DataFrame (a table: TableInput and RobustScale), paired
by seed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mnist1d_fronts.py

(benchmarks/RESULTS-tabular-redesign.md)
"""

import statistics as st

import pandas as pd
from mnist1d.data import get_dataset_args, make_dataset

from matnet.sklearn import TabularClassifier

d = make_dataset(get_dataset_args())
Xtr, ytr, Xte, yte = d["x"], d["y"], d["x_test"], d["y_test"]
cols = [f"x{i}" for i in range(Xtr.shape[1])]
res = {"array": [], "frame": []}
for seed in range(8):
    for kind in ("array", "frame"):
        A, B = (
            (Xtr, Xte)
            if kind == "array"
            else (pd.DataFrame(Xtr, columns=cols), pd.DataFrame(Xte, columns=cols))
        )
        acc = TabularClassifier(random_state=seed).fit(A, ytr).score(B, yte)
        res[kind].append(acc)
    print(seed, {k: round(v[-1], 3) for k, v in res.items()}, flush=True)
for k, v in res.items():
    print(k, f"mean {st.mean(v):.4f} sd {st.stdev(v):.4f}", [round(x, 3) for x in v])
