/* The README's C usage example: train a generated model on the device, evaluate it, save the weights.
 * Built against generated/tiny_mlp by tests/test_readme.py; any model works after renaming the prefix. */
#include <stdio.h>
#include "tiny_mlp.h"

static tiny_mlp_ctx_t net;                                    /* TINY_MLP_CTX_BYTES of RAM, in .bss */
static int8_t x[TINY_MLP_BATCH * TINY_MLP_INPUT_LEN];
static uint8_t labels[TINY_MLP_BATCH];
static int32_t saved[TINY_MLP_PARAMS_COUNT];

/* Application data: class k lights up the k-th quarter of the image. */
static void load_batch(uint32_t step, int8_t *xb, uint8_t *yb) {
    for (uint32_t n = 0; n < TINY_MLP_BATCH; n++) {
        const uint32_t k = (step * 7u + n * 3u) % TINY_MLP_N_CLASSES;
        yb[n] = (uint8_t)k;
        for (uint32_t i = 0; i < TINY_MLP_INPUT_LEN; i++) {
            const int on = i * TINY_MLP_N_CLASSES / TINY_MLP_INPUT_LEN == k;
            xb[n * TINY_MLP_INPUT_LEN + i] = (int8_t)(on ? 100 : -100);
        }
    }
}

int main(void) {
    tiny_mlp_stats_t stats;
    uint32_t correct = 0;
    if (tiny_mlp_init(&net, 42u) != TINY_MLP_OK) return 1;
    for (uint32_t step = 0; step < 1000u; step++) {
        load_batch(step, x, labels);
        if (tiny_mlp_train_step(&net, x, labels, &stats) != TINY_MLP_OK) return 1;
        if (step % 600u == 599u) tiny_mlp_set_lr_inv(&net, 3 * net.lr_inv);   /* plateau schedule */
    }
    load_batch(1000u, x, labels);
    tiny_mlp_evaluate(&net, x, labels, TINY_MLP_BATCH, &correct);
    tiny_mlp_export_params(&net, saved, TINY_MLP_PARAMS_COUNT);              /* store to flash... */
    if (tiny_mlp_import_params(&net, saved, TINY_MLP_PARAMS_COUNT) != TINY_MLP_OK) return 1;  /* ...restore */
    printf("correct %u/%u\n", (unsigned)correct, (unsigned)TINY_MLP_BATCH);
    return correct == TINY_MLP_BATCH ? 0 : 2;
}
