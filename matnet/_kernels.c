/* Optional compiled kernels for the training step: each one does in a single pass over memory what
 * NumPy does in two or three. matnet runs without them (the NumPy path computes the same numbers) and
 * uses them only for C-contiguous float32/float64 host arrays; see matnet/_accel.py.
 *
 *   gather_rows(X, idx, out)         out[i] = X[idx[i]], the rows a few ahead prefetched
 *   bias_relu(Z, b, check=False)     Z = max(Z + b, 0), in place; with check, whether every Z + b
 *                                    was finite
 *   relu_backward_sum(dA, A, db)     dA = dA * (A > 0), in place; db = its column sums
 *   adam_step(p, g, m, v, b1, b2, step, eps)   Adam's update of p, m and v, in place
 *
 * Written to give NumPy's results: ReLU keeps NaN as np.maximum does, and the backward multiplies by
 * the 0/1 mask (so 0 * inf is NaN, as in NumPy) instead of selecting. Only db's summation order
 * differs from BLAS's (rounding, not results). No -ffast-math: every operation is IEEE. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PREFETCH_AHEAD 4 /* rows ahead: chosen by measurement, see benchmarks/README.md */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 0)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* Acquire a C-contiguous buffer of `ndim` dimensions (any item type; callers check it). */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", name,
                     writable ? ", writable" : "");
        return -1;
    }
    if (view->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D, got %d-D", name, ndim, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* 'f' or 'd' (native float32/float64), else 0. */
static char float_kind(const Py_buffer *view) {
    const char *f = view->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if ((f[0] == 'f' && view->itemsize == 4) || (f[0] == 'd' && view->itemsize == 8)) {
        if (f[1] == '\0') return f[0];
    }
    return 0;
}

static void release(Py_buffer *views, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
}

static PyObject *gather_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "gather_rows(X, idx, out) takes 3 arguments");
        return NULL;
    }
    Py_buffer v[3];
    if (get_buffer(args[0], &v[0], 0, 2, "X") < 0) return NULL;
    if (get_buffer(args[1], &v[1], 0, 1, "idx") < 0) { release(v, 1); return NULL; }
    if (get_buffer(args[2], &v[2], 1, 2, "out") < 0) { release(v, 2); return NULL; }
    const char *fmt = v[1].format;
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') fmt++;
    int idx_ok = v[1].itemsize == 8 && (fmt[0] == 'q' || fmt[0] == 'l') && fmt[1] == '\0';
    Py_ssize_t n = v[0].shape[0], m = v[1].shape[0];
    Py_ssize_t row_bytes = v[0].shape[1] * v[0].itemsize;
    if (!idx_ok || v[2].itemsize != v[0].itemsize || strcmp(v[2].format, v[0].format) != 0 ||
        v[2].shape[1] != v[0].shape[1] || v[2].shape[0] != m || n == 0) {
        release(v, 3);
        PyErr_SetString(PyExc_ValueError,
                        "gather_rows needs int64 idx, out of shape (len(idx), X.shape[1]) and "
                        "X's dtype, and a non-empty X");
        return NULL;
    }
    const char *X = v[0].buf;
    const int64_t *idx = v[1].buf;
    char *out = v[2].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {
        if (i + PREFETCH_AHEAD < m) {
            int64_t r = idx[i + PREFETCH_AHEAD];
            r = r < 0 ? 0 : (r >= n ? n - 1 : r);
            const char *p = X + r * row_bytes;
            for (Py_ssize_t o = 0; o < row_bytes; o += 64) PREFETCH(p + o);
        }
        int64_t r = idx[i];
        r = r < 0 ? 0 : (r >= n ? n - 1 : r); /* np.take's mode="clip": never out of bounds */
        memcpy(out + i * row_bytes, X + r * row_bytes, row_bytes);
    }
    Py_END_ALLOW_THREADS
    release(v, 3);
    Py_RETURN_NONE;
}

#define BIAS_RELU(T, CHECK)                                                   \
    for (Py_ssize_t i = 0; i < n; i++) {                                      \
        T *restrict z = (T *)Z + i * k;                                       \
        const T *restrict c = (const T *)b;                                   \
        for (Py_ssize_t j = 0; j < k; j++) {                                  \
            T x = z[j] + c[j];                                                \
            CHECK                                                             \
            z[j] = x < 0 ? (T)0 : x; /* NaN stays NaN, as in np.maximum */     \
        }                                                                     \
    }
/* x - x is 0 for every finite x and NaN for inf and NaN: the column sums in `chk` stay 0 only if
 * every Z + b was finite (summed per column, so that the loop still vectorizes). */
#define CHECKED(T) ((T *)scratch)[j] += x - x;

static PyObject *bias_relu(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "bias_relu(Z, b, check=False) takes 2 or 3 arguments");
        return NULL;
    }
    int check = nargs == 3 ? PyObject_IsTrue(args[2]) : 0;
    if (check < 0) return NULL;
    Py_buffer v[2];
    if (get_buffer(args[0], &v[0], 1, 2, "Z") < 0) return NULL;
    if (get_buffer(args[1], &v[1], 0, 2, "b") < 0) { release(v, 1); return NULL; }
    char kind = float_kind(&v[0]);
    Py_ssize_t n = v[0].shape[0], k = v[0].shape[1];
    if (!kind || float_kind(&v[1]) != kind || v[1].shape[0] != 1 || v[1].shape[1] != k) {
        release(v, 2);
        PyErr_SetString(PyExc_ValueError, "bias_relu needs float32/64 Z (n, k) and b (1, k) alike");
        return NULL;
    }
    void *Z = v[0].buf;
    const void *b = v[1].buf;
    void *scratch = check ? PyMem_Calloc((size_t)k, (size_t)v[0].itemsize) : NULL;
    if (check && scratch == NULL) {
        release(v, 2);
        return PyErr_NoMemory();
    }
    int finite = 1;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f') {
        if (check) { BIAS_RELU(float, CHECKED(float)) } else { BIAS_RELU(float, ) }
    } else {
        if (check) { BIAS_RELU(double, CHECKED(double)) } else { BIAS_RELU(double, ) }
    }
    if (check) {
        for (Py_ssize_t j = 0; j < k; j++) {
            double c = kind == 'f' ? ((float *)scratch)[j] : ((double *)scratch)[j];
            finite &= c == 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(scratch);
    release(v, 2);
    if (!check) Py_RETURN_NONE;
    return PyBool_FromLong(finite);
}

#define RELU_BACKWARD_SUM(T)                                                  \
    T *restrict s = (T *)db;                                                  \
    for (Py_ssize_t j = 0; j < k; j++) s[j] = 0;                              \
    for (Py_ssize_t i = 0; i < n; i++) {                                      \
        T *restrict d = (T *)dA + i * k;                                      \
        const T *restrict a = (const T *)A + i * k;                           \
        for (Py_ssize_t j = 0; j < k; j++) {                                  \
            T x = d[j] * (T)(a[j] > 0); /* dA * (A > 0), as NumPy computes it */ \
            d[j] = x;                                                         \
            s[j] += x;                                                        \
        }                                                                     \
    }

static PyObject *relu_backward_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "relu_backward_sum(dA, A, db) takes 3 arguments");
        return NULL;
    }
    Py_buffer v[3];
    if (get_buffer(args[0], &v[0], 1, 2, "dA") < 0) return NULL;
    if (get_buffer(args[1], &v[1], 0, 2, "A") < 0) { release(v, 1); return NULL; }
    if (get_buffer(args[2], &v[2], 1, 2, "db") < 0) { release(v, 2); return NULL; }
    char kind = float_kind(&v[0]);
    Py_ssize_t n = v[0].shape[0], k = v[0].shape[1];
    if (!kind || float_kind(&v[1]) != kind || float_kind(&v[2]) != kind ||
        v[1].shape[0] != n || v[1].shape[1] != k || v[2].shape[0] != 1 || v[2].shape[1] != k ||
        v[0].buf == v[2].buf) {
        release(v, 3);
        PyErr_SetString(PyExc_ValueError,
                        "relu_backward_sum needs float32/64 dA and A (n, k) and db (1, k) alike");
        return NULL;
    }
    void *dA = v[0].buf, *db = v[2].buf;
    const void *A = v[1].buf;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f') { RELU_BACKWARD_SUM(float) } else { RELU_BACKWARD_SUM(double) }
    Py_END_ALLOW_THREADS
    release(v, 3);
    Py_RETURN_NONE;
}

/* The operations and roundings of matnet.optim.Adam's NumPy passes, in one pass (with
 * -ffp-contract=off, no product is fused into a sum, so the results are the same bits). */
#define ADAM(T, SQRT)                                                         \
    T *restrict p = P, *restrict m = M, *restrict v = V;                      \
    const T *restrict g = G;                                                  \
    const T b1 = (T)beta1, c1 = (T)(1.0 - beta1), b2 = (T)beta2;              \
    const T c2 = (T)(1.0 - beta2), e = (T)eps;                                \
    for (Py_ssize_t i = 0; i < n; i++) {                                      \
        T mi = m[i] * b1 + g[i] * c1;                                         \
        T vi = v[i] * b2 + (g[i] * g[i]) * c2;                                \
        m[i] = mi;                                                            \
        v[i] = vi;                                                            \
        p[i] -= (T)((double)(mi / (SQRT(vi) + e)) * step); /* NumPy: float64 step */ \
    }

static PyObject *adam_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "adam_step(p, g, m, v, b1, b2, step, eps) takes 8 arguments");
        return NULL;
    }
    double beta1 = PyFloat_AsDouble(args[4]), beta2 = PyFloat_AsDouble(args[5]);
    double step = PyFloat_AsDouble(args[6]), eps = PyFloat_AsDouble(args[7]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer v4[4];
    const char *names[4] = {"p", "g", "m", "v"};
    for (int i = 0; i < 4; i++) {
        if (get_buffer(args[i], &v4[i], i != 1, 1, names[i]) < 0) {
            release(v4, i);
            return NULL;
        }
    }
    char kind = float_kind(&v4[0]);
    Py_ssize_t n = v4[0].shape[0];
    int ok = kind != 0;
    for (int i = 1; i < 4; i++) ok = ok && float_kind(&v4[i]) == kind && v4[i].shape[0] == n;
    if (!ok) {
        release(v4, 4);
        PyErr_SetString(PyExc_ValueError, "adam_step needs four float32/64 vectors alike");
        return NULL;
    }
    void *P = v4[0].buf, *M = v4[2].buf, *V = v4[3].buf;
    const void *G = v4[1].buf;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f') { ADAM(float, sqrtf) } else { ADAM(double, sqrt) }
    Py_END_ALLOW_THREADS
    release(v4, 4);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gather_rows", (PyCFunction)(void (*)(void))gather_rows, METH_FASTCALL,
     "gather_rows(X, idx, out): out[i] = X[idx[i]] (indices clipped, as np.take's mode='clip')."},
    {"bias_relu", (PyCFunction)(void (*)(void))bias_relu, METH_FASTCALL,
     "bias_relu(Z, b, check=False): Z = max(Z + b, 0) in place; with check, returns whether "
     "every Z + b was finite."},
    {"relu_backward_sum", (PyCFunction)(void (*)(void))relu_backward_sum, METH_FASTCALL,
     "relu_backward_sum(dA, A, db): dA = dA * (A > 0) in place; db = dA.sum(axis=0)."},
    {"adam_step", (PyCFunction)(void (*)(void))adam_step, METH_FASTCALL,
     "adam_step(p, g, m, v, b1, b2, step, eps): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g g, "
     "p -= step m / (sqrt(v) + eps), in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
