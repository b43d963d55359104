/*
 * hf.h — a Hugging Face model folder opened as a (virtual) GGUF file (internal).
 *
 * What it is for: `-m DIR` everywhere. config.json becomes the `<arch>.*` metadata llama.cpp's
 * converter (convert_hf_to_gguf.py) would write, the tokenizer files the `tokenizer.*` metadata
 * (text/hf_tokenizer.c), and every weight a tensor descriptor with its GGUF name pointing into
 * the read-only mmap of its safetensors shard — no copy. The model loader (model.c) then reads
 * this gguf_file as it reads any other. What Hugging Face stores differently is handled here:
 *  - LLaMA-family q/k rows are not permuted into GGUF's interleaved RoPE pairs: the model rotates
 *    the half-split pairs (HF's rotate_half) and stores each rotated pair interleaved
 *    (SL_ROPE_NEOX_TO_NORM, sl_hf_arch), so attention sees exactly the q and k of the GGUF
 *    file — the same logits bit for bit, and no copy of the weights;
 *  - Gemma's RMSNorm weights are stored without the +1 that GGUF files carry: those small
 *    vectors are converted (+1, f32) into memory owned here;
 *  - Llama-3 RoPE scaling and Phi-3 LongRoPE factors become the rope_freqs / rope_factors_*
 *    tensors the converter computes;
 *  - a tensor whose bytes are not aligned to its element size (possible in a safetensors file)
 *    is copied into aligned memory rather than read misaligned.
 * What it is not: a writer (tools/convert.c writes GGUF from this) or a loader of other
 * formats (.bin pickles, GGUF inside a folder).
 */
#ifndef SL_MODEL_HF_H
#define SL_MODEL_HF_H

#include "format/gguf.h"
#include "model/arch.h"
#include "skipllama.h"

#include <stdbool.h>

typedef struct sl_hf sl_hf; /* what the virtual file's tensors point into */

/* Is path a folder (a Hugging Face model, for sl_model_load)? */
bool sl_hf_is_dir(const char *path);

/* Open DIR: config.json (not needed when vocab_only), model.safetensors or its shards,
 * tokenizer.json, tokenizer_config.json. Returns the virtual file and the owner of the memory
 * its tensors point into (*hf, freed with sl_hf_free after the file is closed). NULL + err on
 * any problem, naming the file and key. */
gguf_file *sl_hf_open(const char *dir, bool vocab_only, sl_hf **hf, sl_error *err);
void sl_hf_free(sl_hf *hf);

/* The architecture row the model must run with: the table's row, with the NeoX RoPE layout
 * when HF stores the q/k rows unpermuted (arch.h, hf_permute_qk). */
const sl_arch *sl_hf_arch(const sl_hf *hf);
/* Whether the q/k rows are in HF's order where GGUF files of that architecture interleave them
 * (a GGUF writer must permute them: tools/convert.c). */
bool sl_hf_qk_unpermuted(const sl_hf *hf);
/* Bytes of the safetensors files, and of the tensors copied (unaligned ones) or converted. */
uint64_t sl_hf_file_bytes(const sl_hf *hf);
uint64_t sl_hf_copied_bytes(const sl_hf *hf);

#endif
