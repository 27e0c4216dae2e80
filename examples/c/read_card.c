/*
 * read_card.c — CarteKit's C API example: list the readers, wait for a card, read every Carte Vitale
 * and CPx card present, print JSON.
 *
 *   cc read_card.c -I$PREFIX/include -L$PREFIX/lib -lcarte -Wl,-rpath,$PREFIX/lib -o read_card
 *   ./read_card                        # the readers pcscd knows
 *   CARTE_BACKEND=simulator ./read_card # in-process virtual bi-fente reader with bundled test cards
 *   echo 1234 | ./read_card --pin      # also verify the CPx PIN (read from standard input, never argv)
 *   ./read_card --pin-pad              # verify it on the reader's PIN pad (the PIN never reaches this program)
 */
#include <carte.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static carte_context *ctx;

static int fail(const char *what, carte_status status) {
    char message[512] = "";
    if (ctx) carte_last_error(ctx, message, sizeof message, NULL);
    fprintf(stderr, "read_card: %s: %s%s%s\n", what, carte_status_name(status), message[0] ? ": " : "", message);
    return 1;
}

/* Prints a JSON document produced by fn(handle, buf, size, needed): asks the size, then fetches it. */
static int print_json(const char *label, carte_status (*fn)(const void *, char *, size_t, size_t *), const void *handle) {
    size_t needed = 0;
    carte_status s = fn(handle, NULL, 0, &needed);
    if (s != CARTE_E_BUFFER_TOO_SMALL) return fail(label, s);
    char *text = malloc(needed);
    if (!text) return 1;
    s = fn(handle, text, needed, &needed);
    if (s == CARTE_OK) printf("%s\n", text);
    free(text);
    return s == CARTE_OK ? 0 : fail(label, s);
}

static carte_status vitale_json(const void *v, char *b, size_t n, size_t *k) { return carte_vitale_json((const carte_vitale *)v, b, n, k); }
static carte_status cpx_json(const void *c, char *b, size_t n, size_t *k) { return carte_cpx_info_json((carte_cpx *)c, b, n, k); }

int main(int argc, char **argv) {
    int with_pin = argc > 1 && strcmp(argv[1], "--pin") == 0;
    int on_pad = argc > 1 && strcmp(argv[1], "--pin-pad") == 0;
    const char *backend = getenv("CARTE_BACKEND");
    int simulator = backend && strcmp(backend, "simulator") == 0;
    carte_status s = carte_context_new(simulator ? CARTE_BACKEND_SIMULATOR : CARTE_BACKEND_PCSC, &ctx);
    if (s != CARTE_OK) return fail("context", s);
    fprintf(stderr, "libcarte %s (API %d)\n", carte_version(), carte_api_version());
    if (simulator) {
        if ((s = carte_sim_insert(ctx, "CarteKit Virtual Bi-fente 00 00", "bundled:vitale/family-five.yaml")) != CARTE_OK) return fail("insert", s);
        if ((s = carte_sim_insert(ctx, "CarteKit Virtual Bi-fente 00 01", "bundled:cps/medecin-liberal.yaml")) != CARTE_OK) return fail("insert", s);
    }

    carte_reader readers[16];
    size_t count = 0;
    int have_card = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        s = carte_list_readers(ctx, readers, 16, &count);
        if (s != CARTE_OK && s != CARTE_E_BUFFER_TOO_SMALL) return fail("readers", s);
        if (count > 16) count = 16;
        for (size_t i = 0; i < count; i++) if (readers[i].card != CARTE_CARD_NONE) have_card = 1;
        if (have_card || attempt == 1) break;
        /* No card yet: wait for one (10 s). */
        carte_event e;
        do {
            s = carte_wait_event(ctx, 10000, &e);
        } while (s == CARTE_OK && e.type != CARTE_EVENT_CARD_INSERTED);
        if (s != CARTE_OK) return fail("waiting for a card", s);
        fprintf(stderr, "card inserted in %s\n", e.reader);
    }
    for (size_t i = 0; i < count; i++)
        fprintf(stderr, "reader %zu: %s (slot %d of %s) card %d\n", i, readers[i].name, readers[i].slot, readers[i].physical_reader, readers[i].card);

    char pin[32] = "";
    if (with_pin && fgets(pin, sizeof pin, stdin)) pin[strcspn(pin, "\r\n")] = 0;

    int status = 0;
    for (size_t i = 0; i < count; i++) {
        int kind = readers[i].card;
        if (kind == CARTE_CARD_VITALE1 || kind == CARTE_CARD_VITALE2) {
            carte_vitale *v = NULL;
            if ((s = carte_read_vitale(ctx, readers[i].name, &v)) != CARTE_OK) { status = fail("read vitale", s); continue; }
            size_t n = 0;
            carte_vitale_beneficiary_count(v, &n);
            for (size_t k = 0; k < n; k++) {
                char first[64], nir[32];
                carte_vitale_beneficiary_field(v, k, CARTE_VITALE_FIRST_NAME, first, sizeof first, NULL);
                carte_vitale_beneficiary_field(v, k, CARTE_VITALE_NIR, nir, sizeof nir, NULL);
                fprintf(stderr, "  beneficiary %zu: %s %s\n", k + 1, first, nir);
            }
            status |= print_json("vitale json", vitale_json, v);
            carte_vitale_free(v);
        } else if (kind == CARTE_CARD_CPS3 || kind == CARTE_CARD_CPS4 || kind == CARTE_CARD_CPS3_CONTACTLESS) {
            carte_cpx *cpx = NULL;
            if ((s = carte_cpx_open(ctx, readers[i].name, &cpx)) != CARTE_OK) { status = fail("open cpx", s); continue; }
            int32_t left = -1, max = -1;
            if (carte_cpx_pin_status(cpx, &left, &max) == CARTE_OK) fprintf(stderr, "  PIN: %d/%d tries left\n", left, max);
            int has_pad = 0;
            if (on_pad && carte_cpx_has_pin_pad(cpx, &has_pad) == CARTE_OK && !has_pad) {
                status = fail("PIN pad", CARTE_E_UNSUPPORTED);
            }
            if (pin[0] || has_pad) {
                if (has_pad) fprintf(stderr, "  enter the PIN on the reader\n");
                s = has_pad ? carte_cpx_verify_pin_on_pad(cpx, &left) : carte_cpx_verify_pin(cpx, pin, &left);
                if (s == CARTE_E_WRONG_PIN) fprintf(stderr, "  wrong PIN: %d tries left\n", left);
                else if (s != CARTE_OK) status = fail("verify PIN", s);
                else {
                    const char *doc = "feuille de soins";
                    uint8_t sig[512];
                    size_t sig_len = 0;
                    if ((s = carte_cpx_sign(cpx, (const uint8_t *)doc, strlen(doc), sig, sizeof sig, &sig_len)) == CARTE_OK)
                        fprintf(stderr, "  signed: %zu bytes\n", sig_len);
                    else status = fail("sign", s);
                }
            }
            memset(pin, 0, sizeof pin);
            status |= print_json("cpx json", cpx_json, cpx);
            carte_cpx_free(cpx);
        }
    }
    carte_context_free(ctx);
    return status;
}
