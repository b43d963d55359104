/*
 * gguf_virtual.c — GGUF files made in memory (gguf_open_virtual, see gguf.h): the metadata of a
 * model that is not stored as GGUF (a Hugging Face directory, src/model/hf.c) written as a GGUF
 * image and read back by the ordinary reader, plus tensor descriptors pointing at weights held
 * elsewhere. What it is not: a second reader — the image goes through gguf_open_memory, so the
 * model and tokenizer code read one kind of metadata whatever the source.
 */
#include "format/gguf.h"

#include "format/quant.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

gguf_file *gguf_open_virtual(void *image, size_t image_size, const gguf_tensor_info *tensors, uint64_t n_tensors,
                             sl_error *err) {
    sl_clear_error(err);
    gguf_file *f = gguf_open_memory(image, image_size, err);
    if (!f) {
        free(image);
        return NULL;
    }
    f->owned_image = image;
    if (f->n_tensors) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: a virtual file's image must hold metadata only");
        goto fail;
    }
    size_t name_bytes = 1;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (sl_add_overflow(name_bytes, (size_t)tensors[i].name.len + 1, &name_bytes)) goto nomem;
    f->owned_names = malloc(name_bytes);
    f->tensors = n_tensors ? calloc((size_t)n_tensors, sizeof(gguf_tensor_info)) : NULL;
    if (!f->owned_names || (n_tensors && !f->tensors)) goto nomem;
    size_t off = 0, total = image_size;
    for (uint64_t i = 0; i < n_tensors; i++) {
        const gguf_tensor_info *src = &tensors[i];
        gguf_tensor_info *t = &f->tensors[i];
        char name[128];
        gguf_str_copy(src->name, name, sizeof name);
        const sl_type_traits *tt = sl_type_traits_of((int)src->type);
        int64_t nelem = 1;
        bool ok = tt && src->data && src->n_dims >= 1 && src->n_dims <= GGUF_MAX_DIMS && src->name.len > 0;
        for (int d = 0; ok && d < GGUF_MAX_DIMS; d++) {
            int64_t ne = d < (int)src->n_dims ? src->ne[d] : 1;
            ok = ne > 0 && !__builtin_mul_overflow(nelem, ne, &nelem);
        }
        ok = ok && src->ne[0] % tt->block_size == 0;
        size_t nb = 0;
        ok = ok && !sl_mul_overflow((size_t)(nelem / tt->block_size), tt->type_size, &nb);
        if (!ok) {
            sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: virtual tensor '%s' has a bad type, shape or no data", name);
            goto fail;
        }
        memcpy(f->owned_names + off, src->name.data, (size_t)src->name.len);
        f->owned_names[off + src->name.len] = 0;
        t->name = (gguf_str){src->name.len, f->owned_names + off};
        off += (size_t)src->name.len + 1;
        t->n_dims = src->n_dims;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < (int)src->n_dims ? src->ne[d] : 1;
        t->type = src->type;
        t->offset = 0;
        t->nbytes = nb;
        t->data = src->data;
        if (sl_add_overflow(total, nb, &total)) goto nomem;
        f->n_tensors = i + 1;
        for (uint64_t j = 0; j < i; j++)
            if (f->tensors[j].name.len == t->name.len && !memcmp(f->tensors[j].name.data, t->name.data, (size_t)t->name.len)) {
                sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: duplicate virtual tensor '%s'", name);
                goto fail;
            }
    }
    f->size = total;
    return f;
nomem:
    sl_set_error(err, SL_ERR_NOMEM, "gguf: out of memory");
fail:
    gguf_close(f);
    return NULL;
}
