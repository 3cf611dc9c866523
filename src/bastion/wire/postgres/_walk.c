/*
 * bastion.wire.postgres._walk: the relay's walk over message boundaries, in C.
 *
 * `skip(data, position, types, max_length)` returns where the first message at or after
 * `position` starts that is not a whole message of one of `types` (a 256-byte table, non-zero
 * for the types to pass over) with a length word from 4 to `max_length`. The relay forwards
 * the bytes passed over untouched and handles the message found there itself, including every
 * error (a bad length) and a message that continues in the next chunk, so nothing here decides
 * anything: it only counts bytes faster than the interpreter can. `framing.skip_messages` is
 * the same in Python, and the tests hold the two to the same answers.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *walk_skip(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "skip(data, position, types, max_length)");
        return NULL;
    }
    Py_ssize_t position = PyLong_AsSsize_t(args[1]);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long max_length = PyLong_AsLongLong(args[3]);
    if (max_length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) != 256) {
        PyErr_SetString(PyExc_TypeError, "types is a 256-byte table");
        return NULL;
    }
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    if (position < 0 || position > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_IndexError, "position is outside the data");
        return NULL;
    }
    while (size - position >= 5 && types[data[position]]) {
        const unsigned char *p = data + position + 1;
        uint32_t length = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                          ((uint32_t)p[2] << 8) | (uint32_t)p[3];
        if (length < 4 || (long long)length > max_length ||
            (Py_ssize_t)length > size - position - 1) {
            break;
        }
        position += 1 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(position);
}

static PyMethodDef walk_methods[] = {
    {"skip", (PyCFunction)(void (*)(void))walk_skip, METH_FASTCALL,
     "skip(data, position, types, max_length) -> int: where the first message starts that "
     "is not a whole message of one of `types` with a length from 4 to max_length."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef walk_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bastion.wire.postgres._walk",
    .m_doc = "Walks PostgreSQL message boundaries for the relay.",
    .m_size = -1,
    .m_methods = walk_methods,
};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&walk_module); }
