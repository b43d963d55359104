/*
 * detokenize.c — `skipllama detokenize -m MODEL.gguf IDS...`: print the text of token ids (as
 * llama.cpp's detokenizer: SPM space prefix removed, clean-up spaces where llama.cpp applies
 * them). Ids come as arguments, each a number or a comma-separated list. Vocab-only files work.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL;
    bool special = false, remove_special = false;
    const char *id_lists[64];
    int n_id_lists = 0;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF file with a tokenizer; vocab-only files work"),
        {.names = "--ids", .type = CLI_STRS, .dest = id_lists, .count = &n_id_lists, .max_count = 64, .meta = "LIST",
         .help = "token ids, comma-separated (as in `logits`); may be repeated, and ids may also follow as arguments"},
        {.names = "--special", .type = CLI_FLAG, .dest = &special, .help = "print control tokens (\"<s>\", \"<|eot_id|>\") as their text"},
        {.names = "--remove-special", .type = CLI_FLAG, .dest = &remove_special, .help = "drop a leading BOS / trailing EOS the vocabulary adds"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "detokenize", .usage = "[-m MODEL.gguf] [--special] [--remove-special] (--ids LIST | IDS...)",
                         .about = "Prints the text of the token ids (\"15043 3186\" or \"15043,3186\"), then a newline.",
                         .opts = opts, .max_pos = -1};
    int prc, n_pos = 0;
    if (!cli_parse(&cmd, argc, argv, &n_pos, &prc)) return prc;
    int32_t *ids = NULL;
    int32_t n = 0, cap = 0;
    int rc = 0;
    for (int i = 0; i < n_id_lists + n_pos && rc == 0; i++) {
        const char *arg = i < n_id_lists ? id_lists[i] : argv[1 + i - n_id_lists];
        int32_t *part = NULL, k = 0;
        if (!cli_parse_ids(arg, &part, &k)) {
            rc = cli_fail("detokenize", "bad token id list '%s' (expected e.g. 15043,3186)", arg);
            break;
        }
        if (n + k > cap) {
            cap = (n + k) * 2;
            int32_t *p = realloc(ids, (size_t)cap * sizeof(int32_t));
            if (!p) {
                free(part);
                rc = cli_fail("detokenize", "out of memory");
                break;
            }
            ids = p;
        }
        memcpy(ids + n, part, (size_t)k * sizeof(int32_t));
        n += k;
        free(part);
    }
    if (rc == 0 && n == 0) rc = cli_fail("detokenize", "no token ids given (e.g. --ids 15043,3186)");
    if (rc) {
        free(ids);
        return rc;
    }
    if (!(path = cli_model_path("detokenize", path))) {
        free(ids);
        return 1;
    }
    sl_model_params mp = sl_model_default_params();
    mp.vocab_only = true;
    sl_error err;
    sl_model *model = cli_load_model("detokenize", path, &mp, &err);
    if (!model) {
        free(ids);
        return cli_fail_err("detokenize", &err);
    }
    const sl_vocab *vocab = sl_model_get_vocab(model);
    char *text = NULL;
    size_t len = 0;
    if (!vocab) rc = cli_fail("detokenize", "'%s' has no tokenizer", path);
    else if (sl_detokenize(vocab, ids, n, remove_special, special, &text, &len, &err) != SL_OK)
        rc = cli_fail_err("detokenize", &err);
    else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    sl_free_text(text);
    free(ids);
    sl_model_free(model);
    return rc;
}
