"""scikit-learn estimators on matnet's engine: ``MLPClassifier`` and ``MLPRegressor`` (scikit-learn's
defaults, exactly), and ``TabularClassifier`` and ``TabularRegressor`` (matnet's tabular recipe,
:mod:`matnet.tabular.recipe`, as their defaults).

Change one import line::

    from sklearn.neural_network import MLPClassifier   # before
    from matnet.sklearn import MLPClassifier           # after

Constructor parameters, defaults, fitted attributes, methods and targets are scikit-learn's (1.9), with
the same training semantics: the loss is ``sum_i w_i l_i / sum_i w_i + alpha / 2 * ||W||**2 / sum_i w_i``
per mini-batch, weights drawn Glorot-uniform (biases too), the ``tol`` / ``n_iter_no_change`` rules on
the training loss or the validation score, the 'invscaling' and 'adaptive' learning rates of 'sgd', the
best weights restored after ``early_stopping``, ``partial_fit``, ``warm_start``, and 'lbfgs' through
``scipy.optimize.minimize(method="L-BFGS-B")`` over the model's flat parameter vector.

The network is a :class:`matnet.Sequential` (Dense, Activation and Dropout layers); ``coefs_[i]`` and
``intercepts_[i]`` are views into its flat parameter vector, so a step of the optimizer updates them all
at once.

What scikit-learn's MLP lacks, as extra keyword parameters whose defaults keep its behaviour:

* ``dropout``: a rate, or one per hidden layer (inverted dropout, stochastic solvers only);
* ``activation``: also 'leaky_relu' and 'gelu', or a list with one activation per hidden layer;
* ``optimizer='adamw'`` with ``weight_decay``: Adam with decoupled weight decay (``solver='adam'``);
* ``class_weight`` ('balanced' or a dict, classifier only): multiplies ``sample_weight``;
* ``dtype``: None (scikit-learn's rule: float32 input trains in float32, anything else in float64),
  'float32' or 'float64';
* ``callbacks``: :class:`matnet.Callback` objects or callables ``f(epoch, logs)``; returning True stops;
* ``validation_loss_curve_``: the validation loss per epoch beside ``validation_scores_``, and
  ``early_stopping_on='loss'`` to stop on it instead of the score;
* ``verbose=1``: a progress bar (tqdm when installed, else one line per epoch), ``verbose=2`` lines;
* ``save(path)`` / ``load(path)``: a safetensors model file (no pickle), also readable by
  :func:`matnet.load` as a plain :class:`matnet.Sequential`.

The package: :mod:`matnet.sklearn.estimators` holds the two estimators and their model files;
:mod:`matnet.sklearn.rules` holds scikit-learn's training rules as a loss wrapper, a learning-rate
schedule and a callback of matnet's training loop.

scikit-learn and SciPy are needed (``pip install 'matnet[sklearn]'``); ``import matnet`` does not import
this package.
"""

from matnet.sklearn.estimators import MLPClassifier, MLPRegressor, load
from matnet.sklearn.tabular import TabularClassifier, TabularRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "TabularClassifier", "TabularRegressor", "load"]
