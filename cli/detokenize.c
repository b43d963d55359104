/*
 * detokenize.c — `skipllama detokenize -m MODEL.gguf IDS...`: print the text of token ids (as
 * llama.cpp's detokenizer: SPM space prefix removed, clean-up spaces where llama.cpp applies
 * them). Ids come as arguments, each a number or a comma-separated list. Vocab-only files work.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *out) {
    fprintf(out, "usage: skipllama detokenize -m MODEL.gguf [--special] [--remove-special] IDS...\n\n"
                 "Prints the text of the token ids (\"15043 3186\" or \"15043,3186\"), then a newline.\n"
                 "  -m, --model FILE    GGUF file with a tokenizer (vocab-only files work)\n"
                 "  --special           print control tokens (\"<s>\", \"<|eot_id|>\") as their text\n"
                 "  --remove-special    drop a leading BOS / trailing EOS the vocabulary adds\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL;
    bool special = false, remove_special = false;
    int32_t *ids = NULL;
    int32_t n = 0, cap = 0;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (cli_is(argv[i], "-h", "--help")) {
            help(stdout);
            free(ids);
            return 0;
        } else if (cli_is(argv[i], "-m", "--model")) {
            if (!(path = cli_value("detokenize", argc, argv, &i))) rc = 1;
        } else if (cli_is(argv[i], NULL, "--special")) {
            special = true;
        } else if (cli_is(argv[i], NULL, "--remove-special")) {
            remove_special = true;
        } else if (argv[i][0] == '-' && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
            help(stderr);
            rc = cli_fail("detokenize", "unknown option '%s'", argv[i]);
        } else {
            int32_t *part = NULL, k = 0;
            if (!cli_parse_ids(argv[i], &part, &k)) {
                rc = cli_fail("detokenize", "bad token id list '%s'", argv[i]);
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
    }
    if (rc) {
        free(ids);
        return rc;
    }
    if (!path) path = cli_default_model();
    sl_model_params mp = sl_model_default_params();
    mp.vocab_only = true;
    sl_error err;
    sl_model *model = sl_model_load(path, &mp, &err);
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
