/*
 * bastion.masking._spans: rewriting the findings inside a text value, in C.
 *
 * `mask(value, spans)` returns `value` with each span's letters and digits replaced by `*`,
 * as `spans.SpanMasker.mask` does for a value that is not a JSON document and whose findings'
 * strategies are `redact` or `partial`. Each span is (start, end, operation, keep_first,
 * keep_last), already resolved so that none overlaps another, with `start` past any prefix
 * that stays visible:
 *
 *   REDACT  every letter and digit of [start, end) masked;
 *   KEEP    the first `keep_first` and last `keep_last` letters and digits kept, at most half
 *           of them (the other kept count shrinks first);
 *   EMAIL   the local part masked when an `@` follows `start` in the span, else as KEEP.
 *
 * Backslash escapes stay whole (the letter after a backslash, and the four hex digits of a
 * \uXXXX), so an escaped value keeps its escapes. Only ASCII letters and digits change, so the
 * value keeps its length. The Python method is the reference, runs for JSON documents and the
 * other strategies, and a property test holds the two to the same bytes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum { SPAN_REDACT = 0, SPAN_KEEP = 1, SPAN_EMAIL = 2 };

#define MASK '*'
#define BACKSLASH 0x5C

static int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Marks the positions of [start, end) that belong to a backslash escape (spans._protected):
 * protected[i] for position start + i. */
static void find_protected(const unsigned char *value, Py_ssize_t size, Py_ssize_t start,
                           Py_ssize_t end, unsigned char *protected) {
    memset(protected, 0, (size_t)(end - start));
    Py_ssize_t position = start - 5 > 0 ? start - 5 : 0;
    while (position < end) {
        if (value[position] != BACKSLASH) {
            position++;
            continue;
        }
        Py_ssize_t last = position + 1;
        if (position + 1 < size && value[position + 1] == 'u') {
            last = position + 5;
        }
        for (Py_ssize_t p = position + 1; p <= last; p++) {
            if (p >= start && p < end) {
                protected[p - start] = 1;
            }
        }
        position += 2;
    }
}

static void mask_range(unsigned char *out, Py_ssize_t start, Py_ssize_t end,
                       const unsigned char *protected, Py_ssize_t protected_start) {
    for (Py_ssize_t p = start; p < end; p++) {
        if (is_alnum(out[p]) && !protected[p - protected_start]) {
            out[p] = MASK;
        }
    }
}

static void keep_ends(unsigned char *out, Py_ssize_t start, Py_ssize_t end, long keep_first,
                      long keep_last, const unsigned char *protected) {
    Py_ssize_t alnum = 0;
    for (Py_ssize_t p = start; p < end; p++) {
        alnum += is_alnum(out[p]);
    }
    while (keep_first + keep_last > alnum / 2 && (keep_first || keep_last)) {
        if (keep_last >= keep_first) {
            keep_last--;
        } else {
            keep_first--;
        }
    }
    Py_ssize_t index = 0;
    for (Py_ssize_t p = start; p < end; p++) {
        if (!is_alnum(out[p])) {
            continue;
        }
        if (index >= keep_first && index < alnum - keep_last && !protected[p - start]) {
            out[p] = MASK;
        }
        index++;
    }
}

static int read_span(PyObject *item, Py_ssize_t size, Py_ssize_t *start, Py_ssize_t *end,
                     int *operation, long *keep_first, long *keep_last) {
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "a span is (start, end, operation, keep_first, keep_last)");
        return -1;
    }
    *start = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
    *end = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
    long op = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
    *keep_first = PyLong_AsLong(PyTuple_GET_ITEM(item, 3));
    *keep_last = PyLong_AsLong(PyTuple_GET_ITEM(item, 4));
    if (PyErr_Occurred()) {
        return -1;
    }
    if (*start < 0 || *end > size || *start > *end) {
        PyErr_SetString(PyExc_IndexError, "a span is outside its value");
        return -1;
    }
    if (op != SPAN_REDACT && op != SPAN_KEEP && op != SPAN_EMAIL) {
        PyErr_Format(PyExc_ValueError, "unknown span operation %ld", op);
        return -1;
    }
    if (*keep_first < 0 || *keep_last < 0) {
        PyErr_SetString(PyExc_ValueError, "kept counts cannot be negative");
        return -1;
    }
    *operation = (int)op;
    return 0;
}

static int apply_span(unsigned char *out, Py_ssize_t size, PyObject *item,
                      unsigned char **protected, Py_ssize_t *capacity) {
    Py_ssize_t start, end;
    int operation;
    long keep_first, keep_last;
    if (read_span(item, size, &start, &end, &operation, &keep_first, &keep_last) < 0) {
        return -1;
    }
    if (end - start > *capacity) {
        unsigned char *grown = PyMem_Realloc(*protected, (size_t)(end - start));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *protected = grown;
        *capacity = end - start;
    }
    if (end == start) {
        return 0;
    }
    find_protected(out, size, start, end, *protected);
    if (operation == SPAN_EMAIL) {
        Py_ssize_t at = end - 1;
        while (at >= start && out[at] != '@') {
            at--;
        }
        if (at > start) {
            mask_range(out, start, at, *protected, start);
            return 0;
        }
        operation = SPAN_KEEP;
    }
    if (operation == SPAN_KEEP) {
        keep_ends(out, start, end, keep_first, keep_last, *protected);
    } else {
        mask_range(out, start, end, *protected, start);
    }
    return 0;
}

static PyObject *spans_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "mask(value, spans: list)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* A new object to write into: with a source, CPython hands out its shared one-byte bytes
     * objects, and writing into one of those would change that byte everywhere. */
    Py_ssize_t size = view.len;
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(out, view.buf, (size_t)size);
    PyBuffer_Release(&view);
    unsigned char *protected = NULL;
    Py_ssize_t capacity = 0;
    PyObject *spans = args[1];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        /* Held while read: reading its numbers may run Python code that changes the list. */
        PyObject *item = Py_NewRef(PyList_GET_ITEM(spans, i));
        int failed = apply_span(out, size, item, &protected, &capacity) < 0;
        Py_DECREF(item);
        if (failed) {
            PyMem_Free(protected);
            Py_DECREF(result);
            return NULL;
        }
    }
    PyMem_Free(protected);
    return result;
}

static PyMethodDef spans_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))spans_mask, METH_FASTCALL,
     "mask(value, spans): the value with its spans' letters and digits masked."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef spans_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bastion.masking._spans",
    .m_doc = "Rewriting the findings inside a text value (spans.SpanMasker.mask), in C.",
    .m_size = -1,
    .m_methods = spans_methods,
};

PyMODINIT_FUNC PyInit__spans(void) {
    PyObject *module = PyModule_Create(&spans_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "REDACT", SPAN_REDACT) < 0 ||
        PyModule_AddIntConstant(module, "KEEP", SPAN_KEEP) < 0 ||
        PyModule_AddIntConstant(module, "EMAIL", SPAN_EMAIL) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
