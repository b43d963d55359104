/*
 * model_bundle.c — the model's neuron bundles (model.h, model/bundle.h): built at load when the
 * caller asks (sl_model_params.bundled: one huge-page buffer for all layers, the file's MLP
 * pages released as each layer is done, so the resident size stays about the file size), or on
 * first use by a sparse path (sl_model_bundles: then the dense path keeps the file's matrices),
 * and the accessors. What it is not: the layout (bundle.c) or the passes (bundle_mlp.c).
 */
#include "model/bundle.h"
#include "model/model.h"

#include "util/util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Lay out and fill every layer's bundles into one buffer; *out gets the [n_layer] array. */
static sl_status build(sl_model *m, sl_pool *pool, bool release, sl_neuron_bundle **out, sl_error *err) {
    const sl_model_config *c = &m->config;
    sl_neuron_bundle *bs = calloc((size_t)c->n_layer, sizeof(*bs));
    if (!bs) return sl_set_error(err, SL_ERR_NOMEM, "bundles: out of memory");
    size_t total = 0;
    for (int l = 0; l < c->n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        sl_status st = sl_bundle_layout(&bs[l], L->ffn_gate.type, L->ffn_down.type, false, c->n_embd, c->n_ff, err);
        if (!st && (L->ffn_up.type != L->ffn_gate.type))
            st = sl_set_error(err, SL_ERR_UNSUPPORTED, "bundles: layer %d has gate %s but up %s", l, sl_type_name(L->ffn_gate.type),
                              sl_type_name(L->ffn_up.type));
        if (!st && sl_add_overflow(total, bs[l].bytes, &total)) st = sl_set_error(err, SL_ERR_NOMEM, "bundles: size overflows");
        if (st) {
            free(bs);
            return st;
        }
    }
    uint8_t *mem = sl_alloc_huge(total);
    if (!mem) {
        free(bs);
        return sl_set_error(err, SL_ERR_NOMEM, "bundles: cannot allocate %.1f MiB for the MLP", (double)total / 1048576.0);
    }
    size_t off = 0;
    for (int l = 0; l < c->n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        sl_bundle_attach(&bs[l], mem + off);
        off += bs[l].bytes;
        sl_status st = sl_bundle_fill(&bs[l], pool, &L->ffn_gate, &L->ffn_up, &L->ffn_down, false, err);
        if (st) {
            sl_free_huge(mem);
            free(bs);
            return st;
        }
        if (release) { /* this layer's file pages are no longer read: give them back */
            const sl_weight *ws[3] = {&L->ffn_gate, &L->ffn_up, &L->ffn_down};
            for (int i = 0; i < 3; i++) gguf_release_pages(m->gguf, ws[i]->data, (size_t)ws[i]->rows * ws[i]->row_bytes);
        }
    }
    m->bundle_mem = mem;
    m->bundle_bytes = total;
    *out = bs;
    return SL_OK;
}

sl_status sl_model_bundle_at_load(sl_model *m, int n_threads, sl_error *err) {
    sl_pool *pool = n_threads > 1 ? sl_pool_init(n_threads) : NULL;
    sl_neuron_bundle *bs = NULL;
    sl_status st = build(m, pool, true, &bs, err);
    sl_pool_free(pool);
    if (st) return st;
    atomic_store(&m->bundles, bs);
    m->dense_bundled = true;
    return SL_OK;
}

const sl_neuron_bundle *sl_model_bundles(const sl_model *cm, sl_pool *pool, sl_error *err) {
    sl_model *m = (sl_model *)cm; /* the bundles are published once; nothing a reader sees changes */
    sl_neuron_bundle *bs = atomic_load(&m->bundles);
    if (bs) return bs;
    pthread_mutex_lock(&m->bundle_mu);
    if (!(bs = atomic_load(&m->bundles)) && build(m, pool, false, &bs, err) == SL_OK) atomic_store(&m->bundles, bs);
    pthread_mutex_unlock(&m->bundle_mu);
    return bs;
}

void sl_model_bundles_free(sl_model *m) {
    free(atomic_load(&m->bundles));
    atomic_store(&m->bundles, NULL);
    sl_free_huge(m->bundle_mem);
    m->bundle_mem = NULL;
}

int64_t sl_model_bundled_bytes(const sl_model *m) { return m && atomic_load(&((sl_model *)m)->bundles) ? (int64_t)m->bundle_bytes : 0; }
bool sl_model_dense_bundled(const sl_model *m) { return m && m->dense_bundled; }
