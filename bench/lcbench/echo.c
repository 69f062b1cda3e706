/* Echo mode: every message is the same `size` bytes, a pattern that differs from byte to byte
 * (so a shifted, dropped or repeated byte shows); each echoed byte is compared with memcmp
 * against the message at the same offset, without copying. */
#include <stdlib.h>
#include <string.h>

#include "bench/lcbench/internal.h"

int lcb_echo_build_message(const lcb_config_t *cfg, char **out, size_t *len)
{
    char *buf = malloc(cfg->size);
    if (buf == NULL)
        return -1;
    /* 251 is prime: the pattern does not repeat at any power-of-two stride. */
    for (size_t i = 0; i < cfg->size; i++)
        buf[i] = (char)('!' + (i * 7 + i / 251) % 94);
    *out = buf;
    *len = cfg->size;
    return 0;
}

void lcb_echo_data(lcb_conn_t *c, const char *data, size_t len)
{
    lcb_worker_t *w = c->w;
    size_t size = w->cfg->size;
    while (len > 0) {
        if (c->inflight == 0) {
            /* More came back than was sent. */
            lcb_count_error(w, LCB_ERR_MISMATCH, 1, c->now);
            c->failed = true;
            return;
        }
        size_t take = size - c->rx_off;
        if (take > len)
            take = len;
        if (memcmp(data, w->pattern + c->rx_off, take) != 0) {
            lcb_count_error(w, LCB_ERR_MISMATCH, 1, c->now);
            c->failed = true;
            return;
        }
        c->rx_off += take;
        data += take;
        len -= take;
        if (c->rx_off == size) {
            c->rx_off = 0;
            lcb_conn_complete(c, 0);
        }
    }
}
