/*
 * bastion.masking._confirm: the commonest detector checks of `candidates`, in C.
 *
 * A Hyperscan match is only a candidate; its detector's check reads the bytes around it and
 * returns the exact span to mask, or None. In free text most candidates are e-mail addresses
 * and prefixed tokens (API keys), and their Python checks cost a few microseconds each, more
 * than everything else Bastion does for a row. This module does the same reading in C:
 *
 *   email(buf, start, end)                     `candidates.confirm_email`
 *   Token(allowed, boundary, limit)            `candidates.token` without a `check`
 *   Token(boundary, boundary, 0, fixed=True)   `candidates.fixed`
 *
 * `allowed` and `boundary` are 256-byte tables, non-zero for the bytes in the set. Every
 * decision is the Python function's, byte for byte: the Python functions stay the reference,
 * run when this module is missing, and a property test holds the two to the same answers.
 * Nothing reads past the buffer; the callers' buffers hold values separated by NUL bytes,
 * which no set here contains, so no span crosses from one value into the next.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

#define BACKSLASH 0x5C

static unsigned char LOCAL_PART[256];    /* ALNUM and ._%+- */
static unsigned char LEADING_PUNCT[256]; /* ._%+- */
static unsigned char DOMAIN_PART[256];   /* ALNUM and .- */
static unsigned char LABEL[256];         /* ALNUM and - */
static unsigned char ESCAPE_LETTERS[256];

static int is_alpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static int is_alnum(unsigned char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

static void fill_tables(void) {
    for (int c = 0; c < 256; c++) {
        int alnum = is_alnum((unsigned char)c);
        LOCAL_PART[c] = alnum || strchr("._%+-", c) != NULL;
        LEADING_PUNCT[c] = c != 0 && strchr("._%+-", c) != NULL;
        DOMAIN_PART[c] = alnum || c == '.' || c == '-';
        LABEL[c] = alnum || c == '-';
        ESCAPE_LETTERS[c] = c != 0 && strchr("nrtfbvu0/", c) != NULL;
    }
    LOCAL_PART[0] = DOMAIN_PART[0] = LABEL[0] = 0;
}

static PyObject *span(Py_ssize_t start, Py_ssize_t end) {
    return Py_BuildValue("(nn)", start, end);
}

/* Reads the (buf, start, end) arguments; start and end are clamped like a slice's bounds. */
static int read_args(PyObject *const *args, Py_ssize_t nargs, const char *name, Py_buffer *view,
                     Py_ssize_t *start, Py_ssize_t *end) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s(buf, start, end)", name);
        return -1;
    }
    *start = PyLong_AsSsize_t(args[1]);
    if (*start == -1 && PyErr_Occurred()) {
        return -1;
    }
    *end = PyLong_AsSsize_t(args[2]);
    if (*end == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (*start < 0 || *end < *start || *end > view->len) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_IndexError, "%s: the candidate is outside the buffer", name);
        return -1;
    }
    return 0;
}

/* candidates._starts_word: nothing of the same token just before `start` (an escape such as
 * \n counts as whitespace). */
static int starts_word(const unsigned char *buf, Py_ssize_t start, const unsigned char *word) {
    if (start == 0) {
        return 1;
    }
    unsigned char previous = buf[start - 1];
    if (!word[previous]) {
        return 1;
    }
    return start >= 2 && buf[start - 2] == BACKSLASH && ESCAPE_LETTERS[previous];
}

/* -- e-mail ------------------------------------------------------------------------------ */

static int only(const unsigned char *data, Py_ssize_t length, const unsigned char *allowed) {
    for (Py_ssize_t i = 0; i < length; i++) {
        if (!allowed[data[i]]) {
            return 0;
        }
    }
    return 1;
}

/* validators.email_valid */
static int email_valid(const unsigned char *local, Py_ssize_t local_length,
                       const unsigned char *domain, Py_ssize_t domain_length) {
    if (!(local_length > 0 && local_length <= 64) ||
        !(domain_length > 3 && domain_length <= 253)) {
        return 0;
    }
    if (local[0] == '.' || local[local_length - 1] == '.') {
        return 0;
    }
    for (Py_ssize_t i = 1; i < local_length; i++) {
        if (local[i] == '.' && local[i - 1] == '.') {
            return 0;
        }
    }
    if (!only(local, local_length, LOCAL_PART)) {
        return 0;
    }
    Py_ssize_t labels = 0, label_start = 0, tld_start = 0;
    for (Py_ssize_t i = 0; i <= domain_length; i++) {
        if (i < domain_length && domain[i] != '.') {
            continue;
        }
        Py_ssize_t length = i - label_start;
        const unsigned char *label = domain + label_start;
        if (!(length > 0 && length <= 63) || label[0] == '-' || label[length - 1] == '-') {
            return 0;
        }
        if (!only(label, length, LABEL)) {
            return 0;
        }
        labels++;
        tld_start = label_start;
        label_start = i + 1;
    }
    if (labels < 2) {
        return 0;
    }
    const unsigned char *tld = domain + tld_start;
    Py_ssize_t tld_length = domain_length - tld_start;
    int alphabetic = tld_length >= 2;
    for (Py_ssize_t i = 0; alphabetic && i < tld_length; i++) {
        alphabetic = is_alpha(tld[i]);
    }
    if (alphabetic) {
        return 1;
    }
    return tld_length >= 4 && (tld[0] | 0x20) == 'x' && (tld[1] | 0x20) == 'n' && tld[2] == '-' &&
           tld[3] == '-';
}

/* candidates.confirm_email */
static PyObject *confirm_email(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    Py_ssize_t start, end;
    if (read_args(args, nargs, "email", &view, &start, &end) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    const unsigned char *found = memchr(buf + start, '@', (size_t)(end - start));
    if (found == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "an e-mail candidate without an @");
        return NULL;
    }
    Py_ssize_t at = found - buf;
    /* The local part: the bytes of its alphabet just before the @, at most 64. */
    Py_ssize_t lowest = at - 64 > 0 ? at - 64 : 0;
    Py_ssize_t left = at;
    while (left > lowest && LOCAL_PART[buf[left - 1]]) {
        left--;
    }
    if (left >= 1 && buf[left - 1] == BACKSLASH) { /* \nalice@...: the n is the escape's */
        left++;
    }
    for (Py_ssize_t i = at - 2; i >= left; i--) { /* "see...alice@": it starts after the dots */
        if (buf[i] == '.' && buf[i + 1] == '.') {
            left = i + 2;
            break;
        }
    }
    while (left < at && LEADING_PUNCT[buf[left]]) { /* "--bob@" */
        left++;
    }
    Py_ssize_t highest = at + 254 < size ? at + 254 : size;
    Py_ssize_t right = at + 1;
    while (right < highest && DOMAIN_PART[buf[right]]) {
        right++;
    }
    while (right > at + 1 && (buf[right - 1] == '.' || buf[right - 1] == '-')) {
        right--;
    }
    PyObject *result;
    if (left < at && email_valid(buf + left, at - left, buf + at + 1, right - at - 1)) {
        result = span(left, right);
    } else {
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    return result;
}

/* -- tokens ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    unsigned char allowed[256];
    unsigned char boundary[256];
    Py_ssize_t limit;
    int fixed;
    vectorcallfunc vectorcall;
} TokenObject;

static int read_table(PyObject *table, unsigned char *into, const char *what) {
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
        PyErr_Format(PyExc_TypeError, "%s is a 256-byte table", what);
        return -1;
    }
    memcpy(into, PyBytes_AS_STRING(table), 256);
    into[0] = 0; /* a NUL separates values: never part of a token */
    return 0;
}

static PyObject *token_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
    TokenObject *self = (TokenObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "a token check takes no keyword arguments");
        return NULL;
    }
    Py_buffer view;
    Py_ssize_t start, end;
    if (read_args(args, nargs, "token", &view, &start, &end) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    int confirmed = 0;
    if (starts_word(buf, start, self->boundary)) {
        if (self->fixed) {
            /* candidates._ends_word */
            confirmed = end >= view.len || !self->boundary[buf[end]];
        } else {
            /* candidates._extend */
            Py_ssize_t stop = self->limit < view.len - end ? end + self->limit : view.len;
            while (end < stop && self->allowed[buf[end]]) {
                end++;
            }
            confirmed = 1;
        }
    }
    PyBuffer_Release(&view);
    return confirmed ? span(start, end) : Py_NewRef(Py_None);
}

static PyObject *token_new(PyTypeObject *type, PyObject *allowed, PyObject *boundary,
                           Py_ssize_t limit, int fixed) {
    TokenObject *self = (TokenObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (read_table(allowed, self->allowed, "allowed") < 0 ||
        read_table(boundary, self->boundary, "boundary") < 0) {
        Py_DECREF(self);
        return NULL;
    }
    if (limit < 0) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_ValueError, "a token's limit cannot be negative");
        return NULL;
    }
    self->limit = limit;
    self->fixed = fixed;
    self->vectorcall = token_call;
    return (PyObject *)self;
}

static PyObject *Token_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"allowed", "boundary", "limit", "fixed", NULL};
    PyObject *allowed, *boundary;
    Py_ssize_t limit;
    int fixed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOn|$p:Token", keywords, &allowed, &boundary,
                                     &limit, &fixed)) {
        return NULL;
    }
    return token_new(type, allowed, boundary, limit, fixed);
}

static PyTypeObject TokenType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bastion.masking._confirm.Token",
    .tp_doc = "Token(allowed, boundary, limit, *, fixed=False)(buf, start, end): the check of "
              "candidates.token (or with fixed, of candidates.fixed).",
    .tp_basicsize = sizeof(TokenObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(TokenObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Token_new,
};

static PyMethodDef confirm_methods[] = {
    {"email", (PyCFunction)(void (*)(void))confirm_email, METH_FASTCALL,
     "email(buf, start, end): candidates.confirm_email."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef confirm_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bastion.masking._confirm",
    .m_doc = "The commonest detector checks of bastion.masking.candidates, in C.",
    .m_size = -1,
    .m_methods = confirm_methods,
};

PyMODINIT_FUNC PyInit__confirm(void) {
    fill_tables();
    if (PyType_Ready(&TokenType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&confirm_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Token", (PyObject *)&TokenType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
