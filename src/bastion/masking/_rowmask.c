/*
 * bastion.masking._rowmask: the DataRow rewriter of a masked result, in C.
 *
 * `RowRewriter.rewrite(run, scan)` takes a run of whole DataRow messages exactly as the server
 * sent them ('D', int32 length, int16 field count, then an int32 length and the bytes of each
 * field, -1 for NULL) and returns the same run with the sensitive fields masked, or None when
 * nothing changed. It does in one pass what `RowMaskPlan.apply_batch` does in Python (that
 * class is the reference, and the tests hold the two to the same bytes):
 *
 *   - every message is checked: its type, its length, its field count and every field length
 *     up to the last column with work; a malformed row raises MalformedRow;
 *   - a constant masker's field is copied in; the `partial` forms of text that most columns
 *     use (an e-mail's domain kept, the first / last letters or digits kept) are computed here
 *     for ASCII values; any other value goes to the column's Python masker;
 *   - the non-empty values of scanned columns are joined by NUL bytes into one buffer, and
 *     `scan(buffer, starts, columns)` is called once for the whole run (the content scanner,
 *     in Python: Hyperscan, then a precise check). It returns (value index, masked value or
 *     None for NULL) for each value that holds a finding;
 *   - the run is written once into a new bytes object, every changed message with its new
 *     length, untouched messages and fields copied as they were.
 *
 * Counts of masked cells per column are kept for the audit record (`counts`).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    OP_PASS = 0,     /* forward the field as it is */
    OP_CONSTANT = 1, /* replace a non-NULL field by a fixed field (length word included) */
    OP_SCAN = 2,     /* give the value to the content scanner */
    OP_CALL = 3,     /* call the column's Python masker: bytes -> bytes | None */
    OP_EMAIL = 4,    /* `***@domain` when the value has a local part and a domain, else call */
    OP_KEEP = 5,     /* mask letters and digits but the first / last few (ASCII), else call */
};

enum {
    EDIT_UNCHANGED = 0, /* a scanned value with no finding (so far) */
    EDIT_FIELD = 1,     /* `field` replaces the whole field */
    EDIT_EMAIL = 2,     /* `***` followed by the value from its last `@` */
    EDIT_KEEP = 3,      /* the value with letters and digits number [from, to) masked */
};

#define DATA_ROW 'D'
#define GENERIC_KEEP_LAST 4
#define GENERIC_MIN_LENGTH 12

typedef struct {
    int kind;
    PyObject *object; /* CONSTANT: the field; CALL, EMAIL, KEEP: the Python masker */
    int keep_first;
    int keep_last;
    int generic; /* KEEP: with keep_first = keep_last = 0, long values keep their last four */
} Op;

typedef struct {
    Py_ssize_t start;  /* the field's length word, as an offset in the run */
    Py_ssize_t end;    /* one past the field's last byte */
    Py_ssize_t length; /* the new field's size, length word included */
    int kind;
    Py_ssize_t a, b;   /* EMAIL: where `@` is in the value; KEEP: the masked range */
    PyObject *field;   /* FIELD: an owned reference */
} Edit;

typedef struct {
    Py_ssize_t start; /* the message's type byte */
    Py_ssize_t end;   /* one past its last byte */
    Py_ssize_t first_edit;
} Row;

typedef struct {
    Py_ssize_t start;  /* the value's first byte in the run */
    Py_ssize_t length;
    Py_ssize_t edit;   /* its placeholder edit */
    int column;
} Value;

typedef struct {
    PyObject_HEAD
    int count;  /* fields per row */
    int walked; /* columns read: up to the last one with work */
    Op *ops;
    Py_ssize_t *counts;
    /* Work space, kept between calls so a steady stream of runs allocates nothing. */
    Edit *edits;
    Py_ssize_t edit_capacity;
    Row *rows;
    Py_ssize_t row_capacity;
    Value *values;
    Py_ssize_t value_capacity;
    int busy;
} RowRewriter;

static PyObject *MalformedRow;
static PyObject *NullField; /* b"\xff\xff\xff\xff" */

static inline int32_t read_int32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                     (uint32_t)p[3]);
}

static inline int16_t read_int16(const unsigned char *p) {
    return (int16_t)(((uint16_t)p[0] << 8) | (uint16_t)p[1]);
}

static inline void write_int32(unsigned char *p, int32_t value) {
    uint32_t v = (uint32_t)value;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int grow(void **array, Py_ssize_t *capacity, Py_ssize_t needed, size_t item) {
    if (needed <= *capacity) {
        return 0;
    }
    Py_ssize_t wanted = *capacity ? *capacity : 64;
    while (wanted < needed) {
        wanted *= 2;
    }
    void *grown = PyMem_Realloc(*array, (size_t)wanted * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = grown;
    *capacity = wanted;
    return 0;
}

/* -- construction ---------------------------------------------------------------------------- */

static void release_ops(RowRewriter *self) {
    if (self->ops != NULL) {
        for (int i = 0; i < self->count; i++) {
            Py_CLEAR(self->ops[i].object);
        }
        PyMem_Free(self->ops);
        self->ops = NULL;
    }
}

static int parse_op(PyObject *item, Op *op) {
    op->kind = OP_PASS;
    op->object = NULL;
    op->keep_first = op->keep_last = op->generic = 0;
    if (item == Py_None) {
        return 0;
    }
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 1) {
        PyErr_SetString(PyExc_TypeError, "an operation is None or a tuple (kind, ...)");
        return -1;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
    if (kind == -1 && PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(item);
    switch (kind) {
    case OP_PASS:
    case OP_SCAN:
        op->kind = (int)kind;
        return 0;
    case OP_CONSTANT: {
        PyObject *field = size == 2 ? PyTuple_GET_ITEM(item, 1) : NULL;
        if (field == NULL || !PyBytes_Check(field) || PyBytes_GET_SIZE(field) < 4) {
            PyErr_SetString(PyExc_TypeError, "a constant operation is (1, field bytes)");
            return -1;
        }
        Py_ssize_t declared = read_int32((const unsigned char *)PyBytes_AS_STRING(field));
        if (declared < -1 || (declared >= 0 && declared != PyBytes_GET_SIZE(field) - 4) ||
            (declared == -1 && PyBytes_GET_SIZE(field) != 4)) {
            PyErr_SetString(PyExc_ValueError, "a constant field's length word is wrong");
            return -1;
        }
        op->kind = OP_CONSTANT;
        op->object = Py_NewRef(field);
        return 0;
    }
    case OP_CALL:
    case OP_EMAIL:
    case OP_KEEP: {
        Py_ssize_t expected = kind == OP_KEEP ? 5 : 2;
        if (size != expected || !PyCallable_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError,
                            "operations are (3, masker), (4, masker) and "
                            "(5, masker, keep_first, keep_last, generic)");
            return -1;
        }
        if (kind == OP_KEEP) {
            long first = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
            long last = PyLong_AsLong(PyTuple_GET_ITEM(item, 3));
            int generic = PyObject_IsTrue(PyTuple_GET_ITEM(item, 4));
            if (PyErr_Occurred() || generic < 0) {
                return -1;
            }
            if (first < 0 || last < 0 || first > 1000 || last > 1000) {
                PyErr_SetString(PyExc_ValueError, "keep_first and keep_last are 0 to 1000");
                return -1;
            }
            op->keep_first = (int)first;
            op->keep_last = (int)last;
            op->generic = generic;
        }
        op->kind = (int)kind;
        op->object = Py_NewRef(PyTuple_GET_ITEM(item, 1));
        return 0;
    }
    default:
        PyErr_Format(PyExc_ValueError, "unknown operation kind %ld", kind);
        return -1;
    }
}

static int RowRewriter_init(RowRewriter *self, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"operations", NULL};
    PyObject *operations;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", keywords, &PyTuple_Type, &operations)) {
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(operations);
    if (count < 1 || count > 32767) {
        PyErr_SetString(PyExc_ValueError, "a result has 1 to 32767 columns");
        return -1;
    }
    release_ops(self);
    PyMem_Free(self->counts);
    self->counts = NULL;
    self->count = 0;
    self->ops = PyMem_Calloc((size_t)count, sizeof(Op));
    self->counts = PyMem_Calloc((size_t)count, sizeof(Py_ssize_t));
    if (self->ops == NULL || self->counts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->count = (int)count;
    self->walked = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_op(PyTuple_GET_ITEM(operations, i), &self->ops[i]) < 0) {
            return -1;
        }
        if (self->ops[i].kind != OP_PASS) {
            self->walked = (int)i + 1;
        }
    }
    return 0;
}

static void RowRewriter_dealloc(RowRewriter *self) {
    release_ops(self);
    PyMem_Free(self->counts);
    PyMem_Free(self->edits);
    PyMem_Free(self->rows);
    PyMem_Free(self->values);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* -- one run ------------------------------------------------------------------------------- */

typedef struct {
    RowRewriter *self;
    const unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t edits;
    Py_ssize_t rows;
    Py_ssize_t values;
    Py_ssize_t scanned_bytes;
} Walk;

static void clear_edits(Walk *walk) {
    Edit *edits = walk->self->edits;
    for (Py_ssize_t i = 0; i < walk->edits; i++) {
        Py_CLEAR(edits[i].field);
    }
    walk->edits = 0;
}

static Edit *add_edit(Walk *walk, Py_ssize_t start, Py_ssize_t end, int kind) {
    RowRewriter *self = walk->self;
    if (grow((void **)&self->edits, &self->edit_capacity, walk->edits + 1, sizeof(Edit)) < 0) {
        return NULL;
    }
    Edit *edit = &self->edits[walk->edits++];
    edit->start = start;
    edit->end = end;
    edit->length = end - start;
    edit->kind = kind;
    edit->a = edit->b = 0;
    edit->field = NULL;
    return edit;
}

/* The field for a masked value: length word and bytes, or the NULL field. Steals nothing. */
static PyObject *field_from(PyObject *value) {
    if (value == Py_None) {
        return Py_NewRef(NullField);
    }
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a masker returned %.100s, not bytes or None",
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    Py_ssize_t length = PyBytes_GET_SIZE(value);
    if (length > INT32_MAX - 4) {
        PyErr_SetString(PyExc_OverflowError, "a masked value is too long for a DataRow");
        return NULL;
    }
    PyObject *field = PyBytes_FromStringAndSize(NULL, length + 4);
    if (field == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(field);
    write_int32(out, (int32_t)length);
    memcpy(out + 4, PyBytes_AS_STRING(value), (size_t)length);
    return field;
}

static int call_masker(Walk *walk, PyObject *masker, Py_ssize_t field_start, Py_ssize_t value_start,
                       Py_ssize_t length) {
    PyObject *value = PyBytes_FromStringAndSize((const char *)walk->data + value_start, length);
    if (value == NULL) {
        return -1;
    }
    PyObject *masked = PyObject_CallOneArg(masker, value);
    Py_DECREF(value);
    if (masked == NULL) {
        return -1;
    }
    PyObject *field = field_from(masked);
    Py_DECREF(masked);
    if (field == NULL) {
        return -1;
    }
    Edit *edit = add_edit(walk, field_start, value_start + length, EDIT_FIELD);
    if (edit == NULL) {
        Py_DECREF(field);
        return -1;
    }
    edit->field = field;
    edit->length = PyBytes_GET_SIZE(field);
    return 0;
}

static int keep_ends(Walk *walk, const Op *op, Py_ssize_t field_start, Py_ssize_t value_start,
                     Py_ssize_t length) {
    const unsigned char *value = walk->data + value_start;
    Py_ssize_t alnum = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if (value[i] & 0x80) { /* not ASCII: Python's rules for letters and digits apply */
            return call_masker(walk, op->object, field_start, value_start, length);
        }
        alnum += is_alnum(value[i]);
    }
    Py_ssize_t first = op->keep_first, last = op->keep_last;
    if (op->generic && first == 0 && last == 0) {
        last = alnum >= GENERIC_MIN_LENGTH ? GENERIC_KEEP_LAST : 0;
    }
    /* At most half of the letters and digits stay visible. */
    while (first + last > alnum / 2 && (first || last)) {
        if (last >= first) {
            last--;
        } else {
            first--;
        }
    }
    Edit *edit = add_edit(walk, field_start, value_start + length, EDIT_KEEP);
    if (edit == NULL) {
        return -1;
    }
    edit->a = first;
    edit->b = alnum - last;
    return 0;
}

static int email_domain(Walk *walk, const Op *op, Py_ssize_t field_start, Py_ssize_t value_start,
                        Py_ssize_t length) {
    const unsigned char *value = walk->data + value_start;
    Py_ssize_t at = length - 1;
    while (at >= 0 && value[at] != '@') {
        at--;
    }
    if (at <= 0 || at >= length - 1) {
        return call_masker(walk, op->object, field_start, value_start, length);
    }
    Edit *edit = add_edit(walk, field_start, value_start + length, EDIT_EMAIL);
    if (edit == NULL) {
        return -1;
    }
    edit->a = at;
    edit->length = 4 + 3 + (length - at);
    return 0;
}

static int malformed(const char *message) {
    PyErr_SetString(MalformedRow, message);
    return -1;
}

/* Reads every message of the run; records the edits of masked fields and the scanned values. */
static int walk_run(Walk *walk) {
    RowRewriter *self = walk->self;
    const unsigned char *data = walk->data;
    Py_ssize_t size = walk->size, pos = 0;
    while (pos < size) {
        if (size - pos < 5) {
            return malformed("a run of DataRows ends inside a message header");
        }
        if (data[pos] != DATA_ROW) {
            PyErr_Format(MalformedRow, "a message of type %c inside a run of DataRows",
                         data[pos] >= 32 && data[pos] < 127 ? data[pos] : '?');
            return -1;
        }
        int32_t length = read_int32(data + pos + 1);
        if (length < 6 || length > size - pos - 1) {
            return malformed("a DataRow is shorter than its field lengths say");
        }
        Py_ssize_t body = pos + 5, end = pos + 1 + (Py_ssize_t)length;
        int fields = read_int16(data + body);
        if (fields != self->count) {
            PyErr_Format(MalformedRow, "a DataRow has %d fields, its RowDescription %d", fields,
                         self->count);
            return -1;
        }
        if (grow((void **)&self->rows, &self->row_capacity, walk->rows + 1, sizeof(Row)) < 0) {
            return -1;
        }
        Row *row = &self->rows[walk->rows++];
        row->start = pos;
        row->end = end;
        row->first_edit = walk->edits;
        Py_ssize_t p = body + 2;
        for (int column = 0; column < self->walked; column++) {
            if (end - p < 4) {
                return malformed("a DataRow is shorter than its field lengths say");
            }
            int32_t field_length = read_int32(data + p);
            if (field_length < 0) {
                if (field_length < -1) {
                    PyErr_Format(MalformedRow, "a DataRow field has length %d", (int)field_length);
                    return -1;
                }
                p += 4;
                continue;
            }
            Py_ssize_t start = p + 4;
            if (field_length > end - start) {
                return malformed("a DataRow is shorter than its field lengths say");
            }
            const Op *op = &self->ops[column];
            int failed = 0;
            switch (op->kind) {
            case OP_PASS:
                break;
            case OP_CONSTANT: {
                Edit *edit = add_edit(walk, p, start + field_length, EDIT_FIELD);
                if (edit == NULL) {
                    return -1;
                }
                edit->field = Py_NewRef(op->object);
                edit->length = PyBytes_GET_SIZE(op->object);
                self->counts[column]++;
                break;
            }
            case OP_SCAN:
                if (field_length > 0) {
                    if (grow((void **)&self->values, &self->value_capacity, walk->values + 1,
                             sizeof(Value)) < 0) {
                        return -1;
                    }
                    Value *value = &self->values[walk->values++];
                    value->start = start;
                    value->length = field_length;
                    value->column = column;
                    value->edit = walk->edits;
                    walk->scanned_bytes += field_length;
                    if (add_edit(walk, p, start + field_length, EDIT_UNCHANGED) == NULL) {
                        return -1;
                    }
                }
                break;
            case OP_CALL:
                failed = call_masker(walk, op->object, p, start, field_length);
                self->counts[column]++;
                break;
            case OP_EMAIL:
                failed = email_domain(walk, op, p, start, field_length);
                self->counts[column]++;
                break;
            case OP_KEEP:
                failed = keep_ends(walk, op, p, start, field_length);
                self->counts[column]++;
                break;
            }
            if (failed) {
                return -1;
            }
            p = start + field_length;
        }
        pos = end;
    }
    return 0;
}

/* Calls the scanner once for all scanned values and records the masked ones. */
static int scan_values(Walk *walk, PyObject *scan) {
    RowRewriter *self = walk->self;
    Py_ssize_t count = walk->values;
    PyObject *buffer = PyBytes_FromStringAndSize(NULL, walk->scanned_bytes + count - 1);
    PyObject *starts = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    PyObject *columns = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int32_t));
    PyObject *found = NULL;
    int status = -1;
    if (buffer == NULL || starts == NULL || columns == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(buffer);
    int64_t *start_of = (int64_t *)PyBytes_AS_STRING(starts);
    int32_t *column_of = (int32_t *)PyBytes_AS_STRING(columns);
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const Value *value = &self->values[i];
        if (i > 0) {
            out[at++] = 0;
        }
        start_of[i] = at;
        column_of[i] = value->column;
        memcpy(out + at, walk->data + value->start, (size_t)value->length);
        at += value->length;
    }
    found = PyObject_CallFunctionObjArgs(scan, buffer, starts, columns, NULL);
    if (found == NULL) {
        goto done;
    }
    if (found != Py_None) {
        PyObject *items = PySequence_Fast(found, "the scanner returns a list of (index, value)");
        if (items == NULL) {
            goto done;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(items, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "the scanner returns (index, value) pairs");
                Py_DECREF(items);
                goto done;
            }
            Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
            if (index == -1 && PyErr_Occurred()) {
                Py_DECREF(items);
                goto done;
            }
            if (index < 0 || index >= count) {
                PyErr_SetString(PyExc_IndexError, "the scanner named a value that was not scanned");
                Py_DECREF(items);
                goto done;
            }
            PyObject *field = field_from(PyTuple_GET_ITEM(item, 1));
            if (field == NULL) {
                Py_DECREF(items);
                goto done;
            }
            Edit *edit = &self->edits[self->values[index].edit];
            Py_XSETREF(edit->field, field);
            edit->kind = EDIT_FIELD;
            edit->length = PyBytes_GET_SIZE(field);
        }
        Py_DECREF(items);
    }
    status = 0;
done:
    Py_XDECREF(buffer);
    Py_XDECREF(starts);
    Py_XDECREF(columns);
    Py_XDECREF(found);
    return status;
}

static unsigned char *render_edit(const Walk *walk, const Edit *edit, unsigned char *out) {
    const unsigned char *field = walk->data + edit->start;
    Py_ssize_t value_length = edit->end - edit->start - 4;
    switch (edit->kind) {
    case EDIT_FIELD:
        memcpy(out, PyBytes_AS_STRING(edit->field), (size_t)edit->length);
        return out + edit->length;
    case EDIT_EMAIL: {
        Py_ssize_t kept = value_length - edit->a;
        write_int32(out, (int32_t)(3 + kept));
        memcpy(out + 4, "***", 3);
        memcpy(out + 7, field + 4 + edit->a, (size_t)kept);
        return out + 7 + kept;
    }
    case EDIT_KEEP: {
        memcpy(out, field, (size_t)(value_length + 4));
        unsigned char *value = out + 4;
        Py_ssize_t index = 0;
        for (Py_ssize_t i = 0; i < value_length; i++) {
            if (is_alnum(value[i])) {
                if (index >= edit->a && index < edit->b) {
                    value[i] = '*';
                }
                index++;
            }
        }
        return out + 4 + value_length;
    }
    default: /* EDIT_UNCHANGED */
        memcpy(out, field, (size_t)(value_length + 4));
        return out + 4 + value_length;
    }
}

/* The run with every edit applied; None when no edit changes anything. */
static PyObject *assemble(Walk *walk) {
    RowRewriter *self = walk->self;
    Py_ssize_t total = walk->size;
    int changed = 0;
    for (Py_ssize_t i = 0; i < walk->edits; i++) {
        const Edit *edit = &self->edits[i];
        if (edit->kind != EDIT_UNCHANGED) {
            changed = 1;
            total += edit->length - (edit->end - edit->start);
        }
    }
    if (!changed) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *data = walk->data;
    for (Py_ssize_t r = 0; r < walk->rows; r++) {
        const Row *row = &self->rows[r];
        Py_ssize_t last_edit = r + 1 < walk->rows ? self->rows[r + 1].first_edit : walk->edits;
        Py_ssize_t growth = 0;
        int row_changed = 0;
        for (Py_ssize_t i = row->first_edit; i < last_edit; i++) {
            const Edit *edit = &self->edits[i];
            if (edit->kind != EDIT_UNCHANGED) {
                row_changed = 1;
                growth += edit->length - (edit->end - edit->start);
            }
        }
        if (!row_changed) {
            memcpy(out, data + row->start, (size_t)(row->end - row->start));
            out += row->end - row->start;
            continue;
        }
        Py_ssize_t length = row->end - row->start - 1 + growth;
        if (length > INT32_MAX) {
            Py_DECREF(result);
            PyErr_SetString(PyExc_OverflowError, "a masked DataRow is too long");
            return NULL;
        }
        *out++ = DATA_ROW;
        write_int32(out, (int32_t)length);
        out += 4;
        Py_ssize_t copied = row->start + 5;
        for (Py_ssize_t i = row->first_edit; i < last_edit; i++) {
            const Edit *edit = &self->edits[i];
            memcpy(out, data + copied, (size_t)(edit->start - copied));
            out += edit->start - copied;
            out = render_edit(walk, edit, out);
            copied = edit->end;
        }
        memcpy(out, data + copied, (size_t)(row->end - copied));
        out += row->end - copied;
    }
    return result;
}

static PyObject *RowRewriter_rewrite(RowRewriter *self, PyObject *args) {
    PyObject *run, *scan;
    if (!PyArg_ParseTuple(args, "OO:rewrite", &run, &scan)) {
        return NULL;
    }
    if (self->ops == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RowRewriter was not initialized");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RowRewriter.rewrite is not reentrant");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(run, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    self->busy = 1;
    Walk walk = {self, (const unsigned char *)view.buf, view.len, 0, 0, 0, 0};
    PyObject *result = NULL;
    if (walk_run(&walk) == 0 && (walk.values == 0 || scan_values(&walk, scan) == 0)) {
        result = assemble(&walk);
    }
    clear_edits(&walk);
    self->busy = 0;
    PyBuffer_Release(&view);
    return result;
}

static PyObject *RowRewriter_counts(RowRewriter *self, void *closure) {
    PyObject *counts = PyTuple_New(self->count);
    if (counts == NULL) {
        return NULL;
    }
    for (int i = 0; i < self->count; i++) {
        PyObject *number = PyLong_FromSsize_t(self->counts[i]);
        if (number == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyTuple_SET_ITEM(counts, i, number);
    }
    return counts;
}

static PyMethodDef RowRewriter_methods[] = {
    {"rewrite", (PyCFunction)RowRewriter_rewrite, METH_VARARGS,
     "rewrite(run, scan) -> bytes | None: the run of DataRow messages with its sensitive "
     "fields masked; None when nothing changed. scan(buffer, starts, columns) is called once "
     "when the run has scanned values and returns (value index, masked value | None) pairs."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef RowRewriter_getset[] = {
    {"counts", (getter)RowRewriter_counts, NULL,
     "Values masked so far by each column's own masker (scanned values are not counted).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RowRewriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bastion.masking._rowmask.RowRewriter",
    .tp_doc = "RowRewriter(operations): rewrites runs of DataRows of one result.",
    .tp_basicsize = sizeof(RowRewriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RowRewriter_init,
    .tp_dealloc = (destructor)RowRewriter_dealloc,
    .tp_methods = RowRewriter_methods,
    .tp_getset = RowRewriter_getset,
};

static struct PyModuleDef rowmask_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bastion.masking._rowmask",
    .m_doc = "Rewrites runs of PostgreSQL DataRow messages for masking.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__rowmask(void) {
    if (PyType_Ready(&RowRewriterType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&rowmask_module);
    if (module == NULL) {
        return NULL;
    }
    MalformedRow = PyErr_NewExceptionWithDoc(
        "bastion.masking._rowmask.MalformedRow",
        "A DataRow whose lengths or field count do not add up.", PyExc_ValueError, NULL);
    NullField = PyBytes_FromStringAndSize("\xff\xff\xff\xff", 4);
    if (MalformedRow == NULL || NullField == NULL ||
        PyModule_AddObjectRef(module, "MalformedRow", MalformedRow) < 0 ||
        PyModule_AddObjectRef(module, "RowRewriter", (PyObject *)&RowRewriterType) < 0 ||
        PyModule_AddIntConstant(module, "PASS", OP_PASS) < 0 ||
        PyModule_AddIntConstant(module, "CONSTANT", OP_CONSTANT) < 0 ||
        PyModule_AddIntConstant(module, "SCAN", OP_SCAN) < 0 ||
        PyModule_AddIntConstant(module, "CALL", OP_CALL) < 0 ||
        PyModule_AddIntConstant(module, "EMAIL", OP_EMAIL) < 0 ||
        PyModule_AddIntConstant(module, "KEEP", OP_KEEP) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
